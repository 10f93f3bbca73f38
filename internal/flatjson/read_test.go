package flatjson

import (
	"encoding/json"
	"strings"
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

// Skip ends every valid JSON value where encoding/json does, inside any
// document around it.
func TestSkipFindsTheEndOfEachValue(t *testing.T) {
	values := []string{
		`"plain"`, `"esc\"aped\\"`, `"\u00e9 \\"`, `""`, `0`, `-12.5e+3`, `true`, `false`, `null`,
		`{}`, `[]`, `{"a":[1,{"b":"]}"}],"c":"{"}`, `[[[]],{"x":"\\\""}]`, `{ "k" : [ 1 , 2 ] }`,
	}
	for _, v := range values {
		if !json.Valid([]byte(v)) {
			t.Fatalf("test value %s is not JSON", v)
		}
		// Skip from index at, in doc whose value starts at start.
		for _, c := range []struct {
			doc       string
			at, start int
		}{{v, 0, 0}, {"  " + v + " ,", 0, 2}, {`[` + v + `]`, 1, 1}, {`{"k": ` + v + `}`, 5, 6}, {v + `,"x"`, 0, 0}} {
			next, ok := Skip([]byte(c.doc), c.at)
			if !ok || next != c.start+len(v) {
				t.Errorf("Skip(%q, %d) = %d, %v; want %d, true", c.doc, c.at, next, ok, c.start+len(v))
			}
		}
	}
	for _, bad := range []string{``, `  `, `"open`, `{"a":[1,2}`, `[`, `"esc\"`, `,`, `}`} {
		if next, ok := Skip([]byte(bad), 0); ok {
			t.Errorf("Skip(%q) = %d, true; want !ok", bad, next)
		}
	}
}

// FuzzSkip: on any input that is one valid JSON value (and white space),
// Skip ends it exactly at its last byte
// (go test -fuzz FuzzSkip ./internal/flatjson).
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{"a":"b\"}"}`, `[1,[2,[3]]]`, `"x"`, `12`, ` null `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if !json.Valid([]byte(doc)) {
			return
		}
		next, ok := Skip([]byte(doc), 0)
		if want := len(strings.TrimRight(doc, " \t\n\r")); !ok || next != want {
			t.Fatalf("Skip(%q) = %d, %v; want %d, true", doc, next, ok, want)
		}
	})
}
