// Package utf8cut shortens text to a byte limit without splitting a
// character. Half a character is invalid UTF-8: a strict MySQL refuses the
// row (error 1366) and the write is retried for ever; Kafka headers and
// JSON carry the broken bytes on.
package utf8cut

import "unicode/utf8"

// Prefix returns the longest prefix of s that is at most n bytes and ends
// at a character boundary: s itself when it fits.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
