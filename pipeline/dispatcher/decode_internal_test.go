package dispatcher

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/schemas"
)

const envelope = `{"schema_version":1,"id":"c1:v1:all:0","campaign_id":"c1","campaign_version":1,"app":"shop","seq":0,"attempt":1,
"send_at":"2026-03-20T09:00:00Z","content":{"title":"Hi"},"options":{},"devices":%s}`

func batchWith(devices string) []byte {
	return []byte(strings.Replace(envelope, "%s", devices, 1))
}

// The fast path accepts exactly what the schema accepts, and decodes to
// the same batch; whatever it is unsure of, the schema decides.
func TestDecodeBatchAgreesWithTheSchema(t *testing.T) {
	long := strings.Repeat("é", 4096)
	cases := map[string]string{
		"one":                 `[{"token":"abc","platform":"ios"}]`,
		"all fields":          `[{"device_id":7,"user_id":"u","token":"abc","platform":"android","locale":"de-AT","timezone":"Europe/Vienna"}]`,
		"many":                `[{"token":"a","platform":"ios"},{"token":"b","platform":"android","device_id":0}]`,
		"4096 runes":          `[{"token":"` + long + `","platform":"ios"}]`,
		"4097 runes":          `[{"token":"` + long + `x","platform":"ios"}]`,
		"empty token":         `[{"token":"","platform":"ios"}]`,
		"no token":            `[{"platform":"ios"}]`,
		"no platform":         `[{"token":"a"}]`,
		"bad platform":        `[{"token":"a","platform":"web"}]`,
		"extra key":           `[{"token":"a","platform":"ios","colour":"red"}]`,
		"capital key":         `[{"Token":"a","platform":"ios"}]`,
		"escaped key":         `[{"tok\u0065n":"a","platform":"ios"}]`,
		"null id":             `[{"token":"a","platform":"ios","device_id":null}]`,
		"float id":            `[{"token":"a","platform":"ios","device_id":1.5}]`,
		"integral float id":   `[{"token":"a","platform":"ios","device_id":1.0}]`,
		"negative id":         `[{"token":"a","platform":"ios","device_id":-1}]`,
		"string id":           `[{"token":"a","platform":"ios","device_id":"7"}]`,
		"number token":        `[{"token":7,"platform":"ios"}]`,
		"object locale":       `[{"token":"a","platform":"ios","locale":{}}]`,
		"repeated key":        `[{"token":"a","token":"b","platform":"ios"}]`,
		"no devices":          `[]`,
		"not a list":          `{"token":"a","platform":"ios"}`,
		"device not object":   `["a"]`,
		"second device bad":   `[{"token":"a","platform":"ios"},{"token":"b","platform":"blackberry"}]`,
		"second device extra": `[{"token":"a","platform":"ios"},{"token":"b","platform":"ios","x":1}]`,
	}
	for name, devs := range cases {
		t.Run(name, func(t *testing.T) { compareDecoders(t, batchWith(devs)) })
	}
	t.Run("bad envelope", func(t *testing.T) {
		compareDecoders(t, []byte(strings.Replace(string(batchWith(`[{"token":"a","platform":"ios"}]`)), `"attempt":1`, `"attempt":0`, 1)))
	})
	t.Run("not JSON", func(t *testing.T) { compareDecoders(t, []byte(`{"devices":[`)) })
	for _, dir := range []string{"../../schemas/examples/batch", "../../schemas/examples/invalid/batch"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(files) == 0 {
			t.Fatalf("no examples in %s", dir)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(filepath.Base(f), func(t *testing.T) { compareDecoders(t, raw) })
		}
	}
}

func compareDecoders(t *testing.T, raw []byte) {
	t.Helper()
	want, wantErr := schemas.DecodeBatch(raw)
	fast, ok := fastDecodeBatch(raw)
	if ok && wantErr != nil {
		t.Fatalf("fast path accepted what the schema rejects (%v)", wantErr)
	}
	if ok && !reflect.DeepEqual(fast, want) {
		t.Fatalf("fast path decoded\n%+v\nschema path\n%+v", fast, want)
	}
	got, err := decodeBatch(raw)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("decodeBatch error %v, schema %v", err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeBatch differs from the schema path")
	}
}
