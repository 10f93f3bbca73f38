package planner

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// appendDevice writes what encoding/json writes for the schemas.BatchDevice
// of a device, whatever its strings hold (the string appender itself is
// fuzzed against encoding/json in internal/flatjson).
func TestAppendDeviceMatchesEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", `q"uo\te`, "ctl\x00\x01\x1f\n\r\t\b\f", "é ü 日本 🙂", "bad\xffutf8\xc3", "\u2028\u2029", "<tag>&amp;"}
	for i, s := range strs {
		for _, d := range []Device{
			{ID: int64(i + 1), UserID: []byte(s), Token: []byte("tok" + s), Platform: []byte(s), Locale: []byte(s), Timezone: []byte(s)},
			{ID: 1 << 40, Token: []byte(s), Platform: []byte("android")},
		} {
			bd := schemas.BatchDevice{DeviceID: d.ID, UserID: string(d.UserID), Token: string(d.Token), Platform: string(d.Platform),
				Locale: string(d.Locale), Timezone: string(d.Timezone)}
			want, err := json.Marshal(bd)
			if err != nil {
				t.Fatal(err)
			}
			got := appendDevice(nil, &d)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendDevice\n%s\nencoding/json\n%s", got, want)
			}
		}
	}
}

func TestAppendTime(t *testing.T) {
	tm := time.Date(2026, 3, 29, 7, 0, 0, 123000000, time.FixedZone("x", 3600))
	want, _ := json.Marshal(tm.UTC())
	if got := appendTime(nil, tm); string(got) != string(want) {
		t.Errorf("%s, want %s", got, want)
	}
}
