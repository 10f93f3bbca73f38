package flatjson

import (
	"encoding/json"
	"testing"
)

func TestPlainString(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"abc",`, "abc", true},
		{`""`, "", true},
		{`"grüße"`, "grüße", true},
		{`"a\"b"`, "", false},     // escape: left to encoding/json
		{"\"a\x01b\"", "", false}, // control character: invalid JSON
		{"\"a\xffb\"", "", false}, // invalid UTF-8
		{`"abc`, "", false},       // unterminated
		{`abc"`, "", false},
	} {
		s, next, ok := PlainString([]byte(c.in), 0)
		if ok != c.ok || string(s) != c.want {
			t.Errorf("PlainString(%q) = %q, %v; want %q, %v", c.in, s, ok, c.want, c.ok)
		}
		if ok && c.in[next-1] != '"' {
			t.Errorf("PlainString(%q): next %d is not after the closing quote", c.in, next)
		}
	}
}

// Int and Number accept exactly what encoding/json accepts as a number of
// that kind, and agree with its value.
func TestNumbersAgreeWithEncodingJSON(t *testing.T) {
	for _, in := range []string{"0", "-0", "7", "-12", "0012", "1.5", "-1.5e3", "1e", "1.", ".5", "-", "+1", "1E+2", "9223372036854775807",
		"9223372036854775808", "-9223372036854775808", "1e400", "12.50", "0.0001", "01.5", "3,"} {
		v, next, ok := Int([]byte(in), 0)
		if ok {
			var want int64
			if err := json.Unmarshal([]byte(in[:next]), &want); err != nil || v != want {
				t.Errorf("Int(%q) = %d; encoding/json on %q: %d, %v", in, v, in[:next], want, err)
			}
		}
		f, next, ok := Number([]byte(in), 0)
		if ok {
			var want float64
			if err := json.Unmarshal([]byte(in[:next]), &want); err != nil || f != want {
				t.Errorf("Number(%q) = %v; encoding/json on %q: %v, %v", in, f, in[:next], want, err)
			}
		}
		var want float64
		if err := json.Unmarshal([]byte(in), &want); err == nil && (!ok || next != len(in)) {
			t.Errorf("Number(%q) refused a number encoding/json reads as %v", in, want)
		}
	}
}

func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e3", "12", "1e400", "01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		v, next, ok := Number([]byte(in), 0)
		if !ok {
			return
		}
		var want float64
		if err := json.Unmarshal([]byte(in[:next]), &want); err != nil || want != v {
			t.Errorf("Number(%q) = %v; encoding/json on %q: %v, %v", in, v, in[:next], want, err)
		}
	})
}
