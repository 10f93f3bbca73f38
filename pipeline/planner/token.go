package planner

import (
	"github.com/pushlane/pushlane/schemas"
)

// Token rules. An APNs device token is 32 bytes, sent as 64 hex digits;
// Apple has said tokens may grow, so up to 100 bytes (200 digits) of even
// length pass. FCM registration tokens are opaque: printable ASCII without
// whitespace, no longer than the batch schema allows.
const (
	apnsMinHex  = 64
	apnsMaxHex  = 200
	fcmMaxBytes = 4096
)

// tokenProblem returns why the dispatcher would reject token for a device
// of platform, or "" if it is acceptable. viaAPNs says the device is sent
// through APNs: iOS devices of an app that has an APNs setup; iOS devices
// of an FCM-only app carry FCM tokens.
func tokenProblem(token []byte, platform []byte, viaAPNs bool) string {
	if len(token) == 0 {
		return "empty token"
	}
	if viaAPNs && string(platform) == schemas.PlatformIOS {
		if len(token) < apnsMinHex || len(token) > apnsMaxHex || len(token)%2 != 0 {
			return "apns token must be 64 to 200 hex digits, even length"
		}
		for _, c := range token {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return "apns token is not hexadecimal"
			}
		}
		return ""
	}
	if len(token) > fcmMaxBytes {
		return "fcm token longer than 4096 bytes"
	}
	for _, c := range token {
		if c <= ' ' || c >= 0x7f {
			return "fcm token has whitespace or a non-printable byte"
		}
	}
	return ""
}
