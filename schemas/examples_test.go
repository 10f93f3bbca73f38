package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite examples/invalid/**/*.want from the current messages")

// requiredExamples are the shapes an operator or a stage author looks for
// in examples/; removing one fails the test.
var requiredExamples = map[string][]string{
	KindCampaign:           {"segment-filters", "tokens", "local-time-localized", "throttled", "background"},
	KindCampaignControl:    {"cancel", "pause", "resume"},
	KindBatch:              {"local-time-wave", "retry"},
	KindResult:             {"delivered", "token-dead", "expired"},
	KindDeadLetter:         {"invalid-campaign", "garbage-batch"},
	KindDeviceRegistration: {"register", "unregister"},
}

func exampleNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			names = append(names, n)
		}
	}
	return names
}

// TestValidExamples validates every example with the real validator, then
// round-trips it through the Go type: decode → encode → decode must give
// the same value, and the encoding must itself be valid.
func TestValidExamples(t *testing.T) {
	for _, kind := range Kinds {
		names := exampleNames(t, filepath.Join("examples", kind))
		for _, want := range requiredExamples[kind] {
			if !slices.Contains(names, want) {
				t.Errorf("examples/%s/%s.json is missing", kind, want)
			}
		}
		for _, name := range names {
			t.Run(kind+"/"+name, func(t *testing.T) {
				raw, err := os.ReadFile(filepath.Join("examples", kind, name+".json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := Validate(kind, raw); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				first, err := Decode(kind, raw)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				enc, err := json.Marshal(first)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if err := Validate(kind, enc); err != nil {
					t.Fatalf("the encoding of the decoded example is invalid: %v\n%s", err, enc)
				}
				second, err := Decode(kind, enc)
				if err != nil {
					t.Fatalf("decode the encoding: %v\n%s", err, enc)
				}
				if !reflect.DeepEqual(first, second) {
					t.Fatalf("round trip changed the event:\nfirst:  %+v\nsecond: %+v", first, second)
				}
				// Nothing in the example is dropped by the Go type: every
				// field of the file survives the round trip.
				var in, out map[string]any
				if err := json.Unmarshal(raw, &in); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(enc, &out); err != nil {
					t.Fatal(err)
				}
				for k := range in {
					if _, ok := out[k]; !ok {
						t.Errorf("field %q of the example is lost by the Go type", k)
					}
				}
			})
		}
	}
}

// TestInvalidExamples decodes each examples/invalid/<kind>/<name>.json and
// asserts the exact message in <name>.want.
func TestInvalidExamples(t *testing.T) {
	total := 0
	for _, kind := range Kinds {
		dir := filepath.Join("examples", "invalid", kind)
		names := exampleNames(t, dir)
		if len(names) == 0 {
			t.Errorf("%s has no invalid examples", dir)
		}
		total += len(names)
		for _, name := range names {
			t.Run(kind+"/"+name, func(t *testing.T) {
				raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
				if err != nil {
					t.Fatal(err)
				}
				v, err := Decode(kind, raw)
				if err == nil {
					t.Fatalf("decoded without error: %+v", v)
				}
				if v != nil {
					t.Errorf("Decode returned a value with its error: %+v", v)
				}
				var ie *InvalidError
				if !errors.As(err, &ie) {
					t.Fatalf("error is %T, want *InvalidError: %v", err, err)
				}
				if ie.Kind != kind {
					t.Errorf("InvalidError.Kind = %q, want %q", ie.Kind, kind)
				}
				wantFile := filepath.Join(dir, name+".want")
				if *update {
					if err := os.WriteFile(wantFile, []byte(err.Error()+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, rerr := os.ReadFile(wantFile)
				if rerr != nil {
					t.Fatalf("every invalid example needs its expected message: %v", rerr)
				}
				if got := err.Error(); got != strings.TrimSuffix(string(want), "\n") {
					t.Errorf("message:\n got: %s\nwant: %s", got, want)
				}
			})
		}
		wants, _ := filepath.Glob(filepath.Join(dir, "*.want"))
		for _, w := range wants {
			if !slices.Contains(names, strings.TrimSuffix(filepath.Base(w), ".want")) {
				t.Errorf("%s has no example beside it", w)
			}
		}
	}
	if total < 40 {
		t.Errorf("%d invalid examples, expected at least 40", total)
	}
}

// TestEveryNegativeRuleIsDescribed keeps every "not" in the schema files
// explained: the description becomes the error message, since a failed
// "not" says nothing by itself.
func TestEveryNegativeRuleIsDescribed(t *testing.T) {
	files, err := filepath.Glob("json/*.schema.json")
	if err != nil || len(files) != len(Kinds) {
		t.Fatalf("schema files: %v %v", files, err)
	}
	var walk func(file, ptr string, v any)
	walk = func(file, ptr string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["not"]; ok {
				if d, _ := v["description"].(string); d == "" {
					t.Errorf("%s#%s has a \"not\" rule without a description", file, ptr)
				}
			}
			for k, sub := range v {
				walk(file, ptr+"/"+k, sub)
			}
		case []any:
			for i, sub := range v {
				walk(file, ptr+"/"+strconv.Itoa(i), sub)
			}
		}
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, "", doc)
	}
}

func TestValidateMessages(t *testing.T) {
	seg := func(content, options string) []byte {
		return []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":` + content +
			`,"schedule":{"mode":"at"},"options":` + options + `}`)
	}
	cases := []struct {
		name string
		kind string
		data []byte
		want []string
	}{
		{"reserved keys name the key and the rule", KindCampaign, seg(`{"title":"t","data":{"gcm.n":"1","from":"x","fine":"y","gcm":"z","gcmx":"ok"}}`, `{}`),
			[]string{
				"/content/data/from: reserved data key: APNs and FCM reserve aps, from, gcm, notification, message_type, collapse_key and every key starting with google. or gcm.",
				"/content/data/gcm.n: reserved data key: APNs and FCM reserve aps, from, gcm, notification, message_type, collapse_key and every key starting with google. or gcm.",
				"/content/data/gcm: reserved data key: APNs and FCM reserve aps, from, gcm, notification, message_type, collapse_key and every key starting with google. or gcm.",
			}},
		{"enum says what it got", KindCampaign, seg(`{"title":"t"}`, `{"priority":"urgent"}`),
			[]string{"/options/priority: must be one of 'high', 'normal', 'low', got 'urgent'"}},
		{"const says what it got", KindCampaignControl, []byte(`{"schema_version":3,"campaign_id":"c","action":"cancel","at":"2026-01-01T00:00:00Z"}`),
			[]string{"/schema_version: must be 1, got 3"}},
		{"several problems, sorted", KindCampaign, seg(`{"title":"t"}`, `{"batch_size":0,"ttl_seconds":-1}`),
			[]string{"/options/batch_size: minimum: got 0, want 1", "/options/ttl_seconds: minimum: got -1, want 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(c.kind, c.data)
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v, want *InvalidError", err)
			}
			if !slices.Equal(ie.Problems, c.want) {
				t.Errorf("problems:\n got: %q\nwant: %q", ie.Problems, c.want)
			}
		})
	}
}

func TestUnknownKind(t *testing.T) {
	const want = `schemas: unknown event kind "campaigns" (known: campaign, campaign-control, batch, result, dead-letter, device-registration)`
	if err := Validate("campaigns", []byte(`{}`)); err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want %s", err, want)
	}
	if v, err := Decode("campaigns", []byte(`{}`)); err == nil || err.Error() != want || v != nil {
		t.Errorf("Decode: %v %v, want %s", v, err, want)
	}
}

func TestSchemaFile(t *testing.T) {
	for _, kind := range Kinds {
		raw, err := SchemaFile(kind)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if !bytes.Contains(raw, []byte(`"$id": "https://pushlane.dev/schemas/`+kind+`.v1.schema.json"`)) {
			t.Errorf("SchemaFile(%s) is not its schema", kind)
		}
	}
}

func TestDecodeCampaignDefaults(t *testing.T) {
	c, err := DecodeCampaign([]byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":{"title":"t"},"schedule":{"mode":"at"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 {
		t.Errorf("Version = %d, want default 1", c.Version)
	}
	if got := c.Options.BatchSizeOrDefault(); got != DefaultBatchSize {
		t.Errorf("BatchSizeOrDefault = %d, want %d", got, DefaultBatchSize)
	}
	c.Options.BatchSize = 250
	if got := c.Options.BatchSizeOrDefault(); got != 250 {
		t.Errorf("BatchSizeOrDefault = %d, want 250", got)
	}
}
