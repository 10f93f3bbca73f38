package feedback

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/schemas"
)

// TestDecodeResultFastAgreesWithTheSchema checks the fast path never
// accepts what schemas.DecodeResult rejects, and decodes what it accepts
// to the same value, on the schema examples and on mutations aimed at
// encoding/json's leniencies.
func TestDecodeResultFastAgreesWithTheSchema(t *testing.T) {
	var inputs [][]byte
	for _, pattern := range []string{"../../schemas/examples/result/*.json", "../../schemas/examples/invalid/result/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no examples for %s: %v", pattern, err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			inputs = append(inputs, raw)
		}
	}
	full := string(benchResultBytes(t))
	mutations := []string{
		full,
		strings.Replace(full, `"id":`, `"ID":`, 1),                                            // case-variant key
		strings.Replace(full, `"app":"app"`, `"app":"app","APP":"x"`, 1),                      // case-variant duplicate
		strings.Replace(full, `"app":"app"`, `"app":"app","app":"b"`, 1),                      // exact duplicate
		strings.Replace(full, `"app":"app"`, `"app":"app","extra":1`, 1),                      // unknown key
		strings.Replace(full, `"user_id":"user-123456"`, `"user_id":null`, 1),                 // null optional
		strings.Replace(full, `"attempt":1`, `"attempt":1.0`, 1),                              // integer as float
		strings.Replace(full, `"attempt":1`, `"attempt":-1`, 1),                               // below minimum
		strings.Replace(full, `"latency_ms":12.5`, `"latency_ms":-1`, 1),                      // below minimum
		strings.Replace(full, `"latency_ms":12.5`, `"latency_ms":1.79769313486231575e308`, 1), // past the maximum, rounds to it
		strings.Replace(full, `"platform":"ios"`, `"platform":"web"`, 1),                      // not in enum
		strings.Replace(full, `"campaign_id":"c1"`, `"campaign_id":"-c1"`, 1),                 // pattern
		strings.Replace(full, `"campaign_id":"c1"`, `"campaign_id":"c 1"`, 1),                 // pattern
		strings.Replace(full, `"at":"2026-03-01T12:00:00Z"`, `"at":"2026-03-01"`, 1),          // not date-time
		strings.Replace(full, `"at":"2026-03-01T12:00:00Z"`, `"at":"2026-03-01t12:00:00z"`, 1),
		strings.Replace(full, `"schema_version":1`, `"schema_version":2`, 1),
		strings.Replace(full, `"token":`, `"tok":`, 1),
		strings.Replace(full, `"reason":""`, `"reason":"a\":b"`, 1),
		full + ` {}`,
		`[` + full + `]`,
		`{"schema_version":1}`,
	}
	for _, m := range mutations {
		inputs = append(inputs, []byte(m))
	}
	fastAccepted := 0
	for _, in := range inputs {
		want, wantErr := schemas.DecodeResult(in)
		fast, ok := decodeResultFast(in)
		if ok {
			fastAccepted++
			if wantErr != nil {
				t.Errorf("fast path accepted what the schema rejects (%v):\n%s", wantErr, in)
				continue
			}
			if !reflect.DeepEqual(fast, want) {
				t.Errorf("fast path decoded\n%+v\nschema path\n%+v", fast, want)
			}
		}
		got, gotErr := DecodeResult(in)
		if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("DecodeResult = %v, %v; schemas.DecodeResult = %v, %v for\n%s", got, gotErr, want, wantErr, in)
		}
	}
	if fastAccepted < 4 {
		t.Errorf("fast path accepted only %d inputs; it should take the valid ones", fastAccepted)
	}
}

// FuzzDecodeResultFast holds the one-pass reader to the schema: whatever
// it accepts, schemas.DecodeResult accepts with the same value.
//
//	go test ./pipeline/feedback -run '^$' -fuzz FuzzDecodeResultFast -fuzztime 1m
func FuzzDecodeResultFast(f *testing.F) {
	for _, pattern := range []string{"../../schemas/examples/result/*.json", "../../schemas/examples/invalid/result/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			raw, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fast, ok := decodeResultFast(in)
		if !ok {
			return
		}
		want, err := schemas.DecodeResult(in)
		if err != nil {
			t.Fatalf("fast path accepted what the schema rejects (%v):\n%s", err, in)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("fast path decoded\n%+v\nschema path\n%+v", fast, want)
		}
	})
}
