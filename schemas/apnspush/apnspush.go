// Package apnspush holds Apple's rules for the push type and priority of a
// push: how the APNs sender chooses apns-push-type and apns-priority for a
// message, and which combinations Apple refuses. The APNs sender
// (providers/apns) refuses a message that breaks them, and the campaign
// check (schemas) refuses a campaign that would send one: were they two
// copies, a campaign the check accepts could be payload_rejected on every
// iOS device. It imports nothing of Pushlane's, so both can use it
// without depending on each other.
package apnspush

// Push types whose rules differ from the rest.
const (
	Alert      = "alert"
	Background = "background"
)

// Visible reports whether a push shows the user something: a title, body,
// sound or badge. Apple takes a content-available push with none of them
// as a background push.
func Visible(title, body, sound string, badge *int) bool {
	return title != "" || body != "" || sound != "" || badge != nil
}

// Type is the apns-push-type Apple gets: pushType when it is set, else
// background for a content-available push that shows nothing and alert
// for any other.
func Type(pushType string, contentAvailable, visible bool) string {
	switch {
	case pushType != "":
		return pushType
	case contentAvailable && !visible:
		return Background
	}
	return Alert
}

// Priority is the apns-priority for priority ("high" 10, "normal" 5,
// "low" 1) and the push's type; "" is 5 for a background push, which Apple
// takes at no other, and 10 for any other. ok is false for any other
// priority.
func Priority(priority, pushType string) (prio int, ok bool) {
	switch priority {
	case "high":
		return 10, true
	case "normal":
		return 5, true
	case "low":
		return 1, true
	case "":
		if pushType == Background {
			return 5, true
		}
		return 10, true
	}
	return 0, false
}

// Problem is a rule of Apple's that a push breaks.
type Problem int

// The problems, in the order Check looks for them.
const (
	OK Problem = iota
	// VisibleBackground: a background push with a title, body, sound or
	// badge.
	VisibleBackground
	// BackgroundPriority: a background push at a priority other than 5.
	BackgroundPriority
	// SilentAlertPriority: an alert at priority 10 that shows nothing;
	// Apple wants priority 10 only for what the user sees at once.
	SilentAlertPriority
)

// Check returns the first rule broken by a push of type pushType (as Type
// returns it) at apns-priority prio, or OK.
func Check(pushType string, prio int, visible bool) Problem {
	switch {
	case pushType == Background && visible:
		return VisibleBackground
	case pushType == Background && prio != 5:
		return BackgroundPriority
	case pushType == Alert && prio == 10 && !visible:
		return SilentAlertPriority
	}
	return OK
}
