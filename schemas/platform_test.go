package schemas

import "testing"

func TestPlatformOf(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"ios", PlatformIOS, true},
		{"android", PlatformAndroid, true},
		{"iOS", "", false},
		{"web", "", false},
		{"", "", false},
	} {
		if got, ok := PlatformOf([]byte(c.in)); got != c.want || ok != c.ok {
			t.Errorf("PlatformOf(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
