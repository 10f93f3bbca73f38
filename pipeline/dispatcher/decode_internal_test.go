package dispatcher

import (
	"errors"
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
		"leading zero id":     `[{"token":"a","platform":"ios","device_id":007}]`,
		"huge id":             `[{"token":"a","platform":"ios","device_id":99999999999999999999}]`,
		"exponent id":         `[{"token":"a","platform":"ios","device_id":1e3}]`,
		"escaped value":       `[{"token":"a\u00e9\n","platform":"ios","locale":"d\u0065"}]`,
		"escaped platform":    `[{"token":"a","platform":"i\u006fs"}]`,
		"raw newline":         "[{\"token\":\"a\nb\",\"platform\":\"ios\"}]",
		"spaces":              ` [ { "token" : "a" , "platform" : "ios" , "device_id" : 3 } , {"token":"b","platform":"android"} ] `,
		"trailing comma":      `[{"token":"a","platform":"ios"},]`,
		"bool token":          `[{"token":true,"platform":"ios"}]`,
	}
	for name, devs := range cases {
		t.Run(name, func(t *testing.T) { compareDecoders(t, batchWith(devs)) })
	}
	t.Run("bad envelope", func(t *testing.T) {
		compareDecoders(t, []byte(strings.Replace(string(batchWith(`[{"token":"a","platform":"ios"}]`)), `"attempt":1`, `"attempt":0`, 1)))
	})
	t.Run("not JSON", func(t *testing.T) { compareDecoders(t, []byte(`{"devices":[`)) })
	one := `[{"token":"a","platform":"ios"}]`
	envelopes := map[string]string{
		"devices first":         `{"devices":` + one + `,"schema_version":1,"id":"c1:v1:all:0","campaign_id":"c1","campaign_version":1,"app":"shop","seq":0,"attempt":1,"send_at":"2026-03-20T09:00:00Z","content":{"title":"Hi"},"options":{}}`,
		"devices twice":         strings.Replace(string(batchWith(one)), `"seq":0`, `"devices":[{"token":"b","platform":"android"}],"seq":0`, 1),
		"escaped devices key":   strings.Replace(string(batchWith(one)), `"devices"`, `"devic\u0065s"`, 1),
		"capital devices key":   strings.Replace(string(batchWith(one)), `"devices"`, `"Devices"`, 1),
		"trailing garbage":      string(batchWith(one)) + ` x`,
		"comma after batch":     string(batchWith(one)) + `,`,
		"title with brackets":   strings.Replace(string(batchWith(one)), `"Hi"`, `"]} \"devices\": [{"`, 1),
		"devices not closed":    strings.TrimSuffix(string(batchWith(one)), "]}") + "}",
		"devices closed by }":   strings.Replace(string(batchWith(one)), `"ios"}]`, `"ios"}}`, 1),
		"white space":           strings.ReplaceAll(string(batchWith(one)), `,"`, " ,\n\t \""),
		"second device bad end": string(batchWith(`[{"token":"a","platform":"ios"},{"token":"b","platform":"ios"}`)),
	}
	for name, doc := range envelopes {
		t.Run(name, func(t *testing.T) { compareDecoders(t, []byte(doc)) })
	}
	// Valid batches in any member order and spacing take the fast path.
	for _, name := range []string{"devices first", "white space", "title with brackets"} {
		if _, ok := fastDecodeBatch([]byte(envelopes[name])); !ok {
			t.Errorf("%s: the fast path gave up on a valid batch", name)
		}
	}
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
	// Errors come from schemas.DecodeBatch itself (the order of the names
	// in one message may vary between calls).
	var ie *schemas.InvalidError
	if (err == nil) != (wantErr == nil) || (err != nil && !errors.As(err, &ie)) {
		t.Fatalf("decodeBatch error %v, schema %v", err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeBatch differs from the schema path")
	}
}

// FuzzDecodeDevices: whatever the device list, the fast path never accepts
// what the schema rejects, nor decodes differently
// (go test -fuzz FuzzDecodeDevices ./pipeline/dispatcher).
func FuzzDecodeDevices(f *testing.F) {
	f.Add(`[{"token":"abc","platform":"ios"}]`)
	f.Add(`[{"device_id":7,"user_id":"u","token":"abc","platform":"android","locale":"de-AT","timezone":"Europe/Vienna"}]`)
	f.Add(`[{"token":"a","platform":"ios","device_id":null}]`)
	f.Add(`[{"Token":"a","platform":"ios"}]`)
	f.Fuzz(func(t *testing.T, devices string) {
		compareDecoders(t, batchWith(devices))
	})
}

// FuzzDecodeBatch: whatever the whole batch document (the envelope around
// the devices included), the fast path never accepts what the schema
// rejects, nor decodes differently
// (go test -fuzz FuzzDecodeBatch ./pipeline/dispatcher).
func FuzzDecodeBatch(f *testing.F) {
	f.Add(string(batchWith(`[{"token":"abc","platform":"ios"},{"token":"d","platform":"android","device_id":3}]`)))
	f.Add(`{"devices":[{"token":"a","platform":"ios"}],"schema_version":1}`)
	files, _ := filepath.Glob("../../schemas/examples/batch/*.json")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(raw))
	}
	f.Fuzz(func(t *testing.T, doc string) {
		compareDecoders(t, []byte(doc))
	})
}
