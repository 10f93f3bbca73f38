package fcm

import (
	"fmt"
	"strings"
	"time"

	"github.com/pushlane/pushlane/providers"
)

// QuotaRetryAfter is the wait an exceeded quota gets when Google names
// none (Result.RetryAfter is then this, not a header).
const QuotaRetryAfter = time.Minute

// APIError is an FCM v1 error answer.
type APIError struct {
	Status     int    // HTTP status
	GRPCStatus string // error.status, e.g. NOT_FOUND
	ErrorCode  string // FcmError errorCode, e.g. UNREGISTERED; "" if none
	Message    string // error.message
	// TokenField is true when a BadRequest field violation names
	// message.token.
	TokenField bool
	RetryAfter time.Duration
	// quotaWait: RetryAfter is QuotaRetryAfter, set because an exceeded
	// quota named no wait; the sender makes it grow with the attempt.
	quotaWait bool
}

func (e *APIError) Error() string {
	code := e.ErrorCode
	if code == "" {
		code = e.GRPCStatus
	}
	return fmt.Sprintf("fcm: %d %s: %s", e.Status, code, e.Message)
}

// Reason is the FcmError code, or the gRPC status when there is none.
func (e *APIError) Reason() string {
	if e.ErrorCode != "" {
		return e.ErrorCode
	}
	return e.GRPCStatus
}

// TokenInvalid reports whether an INVALID_ARGUMENT blames the registration
// token (and not the payload).
func (e *APIError) TokenInvalid() bool {
	if e.TokenField {
		return true
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "registration token") && (strings.Contains(m, "not a valid") || strings.Contains(m, "invalid"))
}

// Classify maps an FCM error to its outcome:
//
//	UNREGISTERED                             token dead
//	SENDER_ID_MISMATCH                       token suspect
//	INVALID_ARGUMENT about the token         token dead
//	INVALID_ARGUMENT otherwise               payload rejected
//	QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL    retryable
//	THIRD_PARTY_AUTH_ERROR, APNS_AUTH_ERROR  credential failure (of the APNs key; see HaltKey)
//	no code (UNSPECIFIED_ERROR): by status   401/403/404 credential failure (the sender's own
//	                                         token or project), 429/5xx retryable, other 4xx payload rejected
func Classify(e *APIError) providers.Outcome {
	switch e.ErrorCode {
	case "UNREGISTERED":
		return providers.TokenDead
	case "SENDER_ID_MISMATCH":
		// The token belongs to another sender. That is also what every
		// token of an app says when its service account is the wrong
		// project, and deleting them all for a configuration mistake is
		// not undone by fixing it: quarantined as suspect, like APNs'
		// DeviceTokenNotForTopic, they are deactivated only after
		// feedback.suspect_strikes strikes.
		return providers.TokenSuspect
	case "INVALID_ARGUMENT":
		if e.TokenInvalid() {
			return providers.TokenDead
		}
		return providers.PayloadRejected
	case "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL":
		return providers.Retryable
	case "THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR":
		return providers.CredentialFailure
	}
	switch {
	case e.Status == 401 || e.Status == 403 || e.Status == 404:
		return providers.CredentialFailure
	case e.Status == 429 || e.Status >= 500:
		return providers.Retryable
	case e.Status == 400 && e.TokenInvalid():
		return providers.TokenDead
	}
	return providers.PayloadRejected
}

// HaltKey is the halt (providers.Halt) that a credential failure with
// reason, on a send to a device of platform, puts the app under.
// THIRD_PARTY_AUTH_ERROR (APNS_AUTH_ERROR before it) on an iOS device is
// Apple refusing the APNs key uploaded to the Firebase project ("APNs
// certificate or web push auth key was invalid or missing"): Google took
// the service account, and only the app's sends that go through APNs are
// halted (providers.FCMviaAPNs); its Android devices go on. Any other
// credential failure is the service account's or the project's, and
// halts all of the app's FCM sends ("fcm"); so does that code on another
// platform, where it names no APNs key (on a web device, the web push
// key, which has no halt of its own: the dispatcher sends no web device).
func HaltKey(platform, reason string) string {
	if platform == providers.PlatformIOS && (reason == "THIRD_PARTY_AUTH_ERROR" || reason == "APNS_AUTH_ERROR") {
		return providers.FCMviaAPNs
	}
	return "fcm"
}
