package utf8cut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrefix(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{"aé", 2, "a"}, // é is 2 bytes: not cut in half
		{"aé", 3, "aé"},
		{"日本", 4, "日"},         // 3-byte characters
		{"😀x", 3, ""},          // a 4-byte character that does not fit at all
		{"a\xffb", 2, "a\xff"}, // bytes that were never UTF-8 are cut as bytes
	} {
		if got := Prefix(c.s, c.n); got != c.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
	long := strings.Repeat("é", 200)
	for n := range len(long) {
		if got := Prefix(long, n); len(got) > n || !utf8.ValidString(got) || len(got) < n-1 {
			t.Fatalf("Prefix(é×200, %d) = %d bytes, valid %v", n, len(got), utf8.ValidString(got))
		}
	}
}
