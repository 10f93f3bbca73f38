package flatjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkAppendString holds AppendString, on s as a string, a []byte and a
// named string type, to json.Marshal: the same bytes, valid JSON, and the
// same decoded string.
func checkAppendString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("%q: encoding/json: %v", s, err)
	}
	type name string
	for _, got := range [][]byte{
		AppendString(nil, s),
		AppendString(nil, []byte(s)),
		AppendString(nil, name(s)),
		AppendString([]byte("prefix"), s)[len("prefix"):],
	} {
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: AppendString writes %s, encoding/json %s", s, got, want)
		}
		var gotS, wantS string
		if err := json.Unmarshal(got, &gotS); err != nil {
			t.Fatalf("%q: AppendString writes invalid JSON %s: %v", s, got, err)
		}
		if err := json.Unmarshal(want, &wantS); err != nil {
			t.Fatal(err)
		}
		if gotS != wantS {
			t.Fatalf("%q decodes to %q, encoding/json's to %q", s, gotS, wantS)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `q"uo\te`, "ctl\x00\x01\x1f\n\r\t\b\f\x7f", "<tag>&amp;",
		"é ü 日本 🙂", "\u2028\u2029\u2027\u202a", "bad\xffutf8\xc3", "\xc3", "\xe2\x80", "\xed\xa0\x80 surrogate",
		"\xc0\xaf overlong", "\xf4\x90\x80\x80 beyond U+10FFFF", "\U0010ffff",
	} {
		checkAppendString(t, s)
	}
	// Every byte alone, and after a multi-byte rune: the ASCII table and
	// the invalid-UTF-8 path at each position.
	for c := range 256 {
		checkAppendString(t, string([]byte{byte(c)}))
		checkAppendString(t, "é"+string([]byte{byte(c)})+"x")
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"a", "\"", "\\", "\x00", "\b\f", "<>&", "\xff", "\u2028", "日本", "\xe2\x80\xa8\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(checkAppendString)
}

func BenchmarkAppendString(b *testing.B) {
	token := "c0de00000000000000000000000000000000000000000000000000000000beef"
	buf := make([]byte, 0, 256)
	b.Run("string", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendString(buf[:0], token)
		}
	})
	tokenBytes := []byte(token)
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendString(buf[:0], tokenBytes)
		}
	})
}
