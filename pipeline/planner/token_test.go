package planner

import (
	"strings"
	"testing"
)

func TestTokenProblem(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	cases := []struct {
		token, platform string
		viaAPNs         bool
		want            string
	}{
		{hex64, "ios", true, ""},
		{strings.ToUpper(hex64), "ios", true, ""},
		{strings.Repeat("0f", 100), "ios", true, ""}, // 200 digits
		{"", "ios", true, "empty token"},
		{"", "android", false, "empty token"},
		{hex64[:63], "ios", true, "apns token must be 64 to 200 hex digits, even length"},
		{hex64 + "a", "ios", true, "apns token must be 64 to 200 hex digits, even length"},
		{strings.Repeat("0f", 101), "ios", true, "apns token must be 64 to 200 hex digits, even length"},
		{hex64[:62] + "zz", "ios", true, "apns token is not hexadecimal"},
		{hex64[:62] + " a", "ios", true, "apns token is not hexadecimal"},
		// An iOS device of an FCM-only app carries an FCM token.
		{"fcm:APA91bH-token_value", "ios", false, ""},
		{"fcm:APA91bH-token_value", "android", true, ""}, // android always FCM
		{"has space", "android", false, "fcm token has whitespace or a non-printable byte"},
		{"tab\there", "android", false, "fcm token has whitespace or a non-printable byte"},
		{"caf\xc3\xa9", "android", false, "fcm token has whitespace or a non-printable byte"},
		{strings.Repeat("x", 4096), "android", false, ""},
		{strings.Repeat("x", 4097), "android", false, "fcm token longer than 4096 bytes"},
	}
	for _, c := range cases {
		if got := tokenProblem([]byte(c.token), []byte(c.platform), c.viaAPNs); got != c.want {
			t.Errorf("%q %s apns=%v: %q, want %q", c.token, c.platform, c.viaAPNs, got, c.want)
		}
	}
}
