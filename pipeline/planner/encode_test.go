package planner

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uo\te`, "ctl\x00\x01\x1f\n\r\t", "é ü 日本 🙂", "bad\xffutf8\xc3", "\u2028\u2029", "<tag>&amp;"} {
		b := appendString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		_ = json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Errorf("%q round-trips to %q, encoding/json gives %q", s, got, wantS)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"a", "\"", "\xff", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: invalid JSON %s", s, b)
		}
		want, _ := json.Marshal(s)
		var wantS string
		_ = json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("%q: %q, encoding/json %q", s, got, wantS)
		}
	})
}

func TestAppendTime(t *testing.T) {
	tm := time.Date(2026, 3, 29, 7, 0, 0, 123000000, time.FixedZone("x", 3600))
	want, _ := json.Marshal(tm.UTC())
	if got := appendTime(nil, tm); string(got) != string(want) {
		t.Errorf("%s, want %s", got, want)
	}
}
