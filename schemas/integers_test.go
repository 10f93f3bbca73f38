package schemas

import (
	"encoding/json"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// To JSON Schema an integer is a number without a fractional part, however
// it is written; a producer's validator accepts 2.0 and 1e2 where the
// schema says "integer", so Pushlane must decode them too, to the same
// value as 2 and 100. Each event is given twice, with odd and with plain
// spellings.
func TestIntegersWrittenWithFractionOrExponentDecode(t *testing.T) {
	cases := []struct {
		kind       string
		odd, plain string
	}{
		{KindCampaign,
			`{"schema_version":1.0,"id":"c1","version":2.0,"app":"shop","audience":{"type":"segment"},"content":{"title":"t","badge":1e2},` +
				`"schedule":{"mode":"at"},"options":{"ttl_seconds":3.6e3,"batch_size":500.000,"throttle_per_second":0.2E+1}}`,
			`{"schema_version":1,"id":"c1","version":2,"app":"shop","audience":{"type":"segment"},"content":{"title":"t","badge":100},` +
				`"schedule":{"mode":"at"},"options":{"ttl_seconds":3600,"batch_size":500,"throttle_per_second":2}}`},
		{KindCampaignControl,
			`{"schema_version":1e0,"campaign_id":"c1","action":"cancel","at":"2026-03-29T10:00:00Z"}`,
			`{"schema_version":1,"campaign_id":"c1","action":"cancel","at":"2026-03-29T10:00:00Z"}`},
		{KindBatch,
			`{"schema_version":1,"id":"b","campaign_id":"c1","campaign_version":4.294967295e9,"app":"shop","seq":7.0,"attempt":1E0,` +
				`"send_at":"2026-03-29T10:00:00Z","content":{"title":"t","badge":0.0},"options":{},` +
				`"devices":[{"device_id":12e1,"token":"x","platform":"android"},{"device_id":-0.0,"token":"y","platform":"ios"},{"device_id":9.223372036854775807e18,"token":"z","platform":"ios"}]}`,
			`{"schema_version":1,"id":"b","campaign_id":"c1","campaign_version":4294967295,"app":"shop","seq":7,"attempt":1,` +
				`"send_at":"2026-03-29T10:00:00Z","content":{"title":"t","badge":0},"options":{},` +
				`"devices":[{"device_id":120,"token":"x","platform":"android"},{"device_id":0,"token":"y","platform":"ios"},{"device_id":9223372036854775807,"token":"z","platform":"ios"}]}`},
		{KindResult,
			`{"schema_version":1,"id":"r","campaign_id":"c1","campaign_version":1,"batch_id":"b","app":"shop","device_id":5e0,"token":"x","platform":"android",` +
				`"outcome":"delivered","status":2.0e2,"attempt":100e-2,"at":"2026-03-29T10:00:00Z","latency_ms":12.0,"lateness_ms":-1e1}`,
			`{"schema_version":1,"id":"r","campaign_id":"c1","campaign_version":1,"batch_id":"b","app":"shop","device_id":5,"token":"x","platform":"android",` +
				`"outcome":"delivered","status":200,"attempt":1,"at":"2026-03-29T10:00:00Z","latency_ms":12,"lateness_ms":-10}`},
		{KindDeadLetter,
			`{"schema_version":1,"stage":"planner","reason":"r","topic":"t","partition":3.0,"offset":1.5e1,"value":"eyJ9","value_bytes":2e6,"at":"2026-03-29T10:00:00Z"}`,
			`{"schema_version":1,"stage":"planner","reason":"r","topic":"t","partition":3,"offset":15,"value":"eyJ9","value_bytes":2000000,"at":"2026-03-29T10:00:00Z"}`},
		{KindDeviceRegistration,
			`{"schema_version":0.1e1,"app":"shop","token":"t","platform":"ios","registered_at":"2026-03-29T10:00:00Z"}`,
			`{"schema_version":1,"app":"shop","token":"t","platform":"ios","registered_at":"2026-03-29T10:00:00Z"}`},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			want, err := Decode(c.kind, []byte(c.plain))
			if err != nil {
				t.Fatalf("plain: %v", err)
			}
			got, err := Decode(c.kind, []byte(c.odd))
			if err != nil {
				t.Fatalf("odd spellings: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("odd spellings decode to\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// Only integers are rewritten: a fraction where the schema wants an
// integer is still the schema's to refuse.
func TestFractionsAreStillNotIntegers(t *testing.T) {
	_, err := DecodeDeadLetter([]byte(`{"schema_version":1,"stage":"planner","reason":"r","topic":"t","partition":2.5,"offset":0,"value":"","at":"2026-03-29T10:00:00Z"}`))
	if err == nil || err.Error() != "invalid dead-letter: /partition: got number, want integer" {
		t.Errorf("got %v", err)
	}
}

// Every integer of every schema has a minimum and a maximum within the
// range of the Go field it decodes into: an event that passes the
// published schema must not then fail to fit, as a dead letter's
// partition of 2^31 did (json: cannot unmarshal number 2147483648 into Go
// struct field DeadLetter.partition of type int32).
func TestIntegerBoundsFitTheGoTypes(t *testing.T) {
	docs := map[string]map[string]any{}
	load := func(file string) map[string]any {
		if d, ok := docs[file]; ok {
			return d
		}
		raw, err := os.ReadFile(filepath.Join("json", file))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		docs[file] = d
		return d
	}
	goTypes := map[string]reflect.Type{
		KindCampaign: reflect.TypeFor[Campaign](), KindCampaignControl: reflect.TypeFor[CampaignControl](), KindBatch: reflect.TypeFor[Batch](),
		KindResult: reflect.TypeFor[Result](), KindDeadLetter: reflect.TypeFor[DeadLetter](), KindDeviceRegistration: reflect.TypeFor[DeviceRegistration](),
	}
	checked := 0
	var walk func(file string, node map[string]any, typ reflect.Type, at string)
	walk = func(file string, node map[string]any, typ reflect.Type, at string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if ref, ok := node["$ref"].(string); ok {
			refFile, ptr, _ := strings.Cut(ref, "#")
			if refFile == "" {
				refFile = file
			}
			var target any = load(refFile)
			for _, p := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
				target = target.(map[string]any)[p]
			}
			walk(refFile, target.(map[string]any), typ, at)
		}
		if node["type"] == "integer" {
			checked++
			lo, hi, ok := goIntRange(typ)
			minimum, okMin := bigInt(node["minimum"])
			maximum, okMax := bigInt(node["maximum"])
			switch {
			case !ok:
				t.Errorf("%s: an integer decoded into %s", at, typ)
			case !okMin || !okMax:
				t.Errorf("%s: an integer (Go %s) needs a minimum and a maximum, has %v and %v", at, typ, node["minimum"], node["maximum"])
			case minimum.Cmp(lo) < 0 || maximum.Cmp(hi) > 0:
				t.Errorf("%s: %s to %s does not fit Go %s (%s to %s)", at, minimum, maximum, typ, lo, hi)
			}
		}
		if props, ok := node["properties"].(map[string]any); ok && typ.Kind() == reflect.Struct {
			for name, sub := range props {
				f, ok := fieldOfJSONName(typ, name)
				if !ok {
					t.Errorf("%s/%s: no field of %s", at, name, typ)
					continue
				}
				walk(file, sub.(map[string]any), f.Type, at+"/"+name)
			}
		}
		if items, ok := node["items"].(map[string]any); ok && typ.Kind() == reflect.Slice {
			walk(file, items, typ.Elem(), at+"/*")
		}
		if more, ok := node["additionalProperties"].(map[string]any); ok && typ.Kind() == reflect.Map {
			walk(file, more, typ.Elem(), at+"/*")
		}
	}
	for _, kind := range Kinds {
		file := kind + ".v1.schema.json"
		walk(file, load(file), goTypes[kind], file+"#")
	}
	// campaign 5, batch 8 (with the campaign's content and options), result 4, dead-letter 3.
	if checked != 20 {
		t.Errorf("%d integers checked, want 20: did the walk miss a part of a schema?", checked)
	}
}

func bigInt(v any) (*big.Int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	return new(big.Int).SetString(string(n), 10)
}

func goIntRange(typ reflect.Type) (lo, hi *big.Int, ok bool) {
	one := big.NewInt(1)
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		hi = new(big.Int).Sub(new(big.Int).Lsh(one, uint(typ.Bits()-1)), one)
		return new(big.Int).Neg(new(big.Int).Add(hi, one)), hi, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return new(big.Int), new(big.Int).Sub(new(big.Int).Lsh(one, uint(typ.Bits())), one), true
	}
	return nil, nil, false
}

func fieldOfJSONName(typ reflect.Type, name string) (reflect.StructField, bool) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// At the bounds: the largest value of the Go type decodes, the next is
// the schema's to refuse, with the schema's message.
func TestIntegersAtTheGoBounds(t *testing.T) {
	deadLetter := func(partition, offset string) []byte {
		return []byte(`{"schema_version":1,"stage":"planner","reason":"r","topic":"t","partition":` + partition + `,"offset":` + offset +
			`,"value":"","at":"2026-03-29T10:00:00Z"}`)
	}
	d, err := DecodeDeadLetter(deadLetter("2147483647", "9223372036854775807"))
	if err != nil || d.Partition != 2147483647 || d.Offset != 9223372036854775807 {
		t.Errorf("at the maximum: %+v %v", d, err)
	}
	d, err = DecodeDeadLetter(deadLetter("-2147483648", "-9223372036854775808"))
	if err != nil || d.Partition != -2147483648 || d.Offset != -9223372036854775808 {
		t.Errorf("at the minimum: %+v %v", d, err)
	}
	for _, c := range []struct {
		kind string
		data []byte
		want string
	}{
		{KindDeadLetter, deadLetter("2147483648", "0"), "invalid dead-letter: /partition: maximum: got 2,147,483,648, want 2,147,483,647"},
		{KindDeadLetter, deadLetter("-2147483649", "0"), "invalid dead-letter: /partition: minimum: got -2,147,483,649, want -2,147,483,648"},
		{KindDeadLetter, deadLetter("0", "9223372036854775808"), "invalid dead-letter: /offset: maximum: got 9,223,372,036,854,775,808, want 9,223,372,036,854,775,807"},
		{KindCampaign, []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":{"badge":9.3e18},"schedule":{"mode":"at"}}`),
			"invalid campaign: /content/badge: maximum: got 9,300,000,000,000,000,000, want 9,223,372,036,854,775,807"},
		// Far from any bound, a short form: not 100,001 digits in a dead letter's reason.
		{KindCampaign, []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":{"badge":1e100000},"schedule":{"mode":"at"}}`),
			"invalid campaign: /content/badge: maximum: got 1e+100000, want 9,223,372,036,854,775,807"},
	} {
		_, err := Decode(c.kind, c.data)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.data, err, c.want)
		}
	}
}

// The result's float fields are bounded by the largest float64, so a
// number the schema accepts is one Go reads as a finite float64. 1e400
// once passed the schema and then failed the decode. What Go itself
// writes (strconv's shortest form, as the dispatcher encodes results)
// stays within the bound: the largest float64 is written
// 1.7976931348623157e308 or its digits followed by zeros.
func TestResultFloatBounds(t *testing.T) {
	maxText := strconv.FormatFloat(math.MaxFloat64, 'f', -1, 64)
	result := func(field, n string) []byte {
		return []byte(`{"schema_version":1,"id":"r","campaign_id":"c1","campaign_version":1,"batch_id":"b","app":"shop","token":"x",` +
			`"platform":"android","outcome":"delivered","attempt":1,"at":"2026-03-29T10:00:00Z","` + field + `":` + n + `}`)
	}
	for _, c := range []struct{ field, n, want string }{
		{"latency_ms", "1e400", "invalid result: /latency_ms: maximum: got 1e+400, want 1.7976931348623157e+308"},
		{"latency_ms", "1.7976931348623158e308", "invalid result: /latency_ms: maximum: got 1.7976931348623158e+308, want 1.7976931348623157e+308"},
		{"latency_ms", "1.7976931348623157e308", ""},
		{"latency_ms", maxText, ""},
		{"latency_ms", "1e-400", ""},
		{"lateness_ms", "1e400", "invalid result: /lateness_ms: maximum: got 1e+400, want 1.7976931348623157e+308"},
		{"lateness_ms", "-1e400", "invalid result: /lateness_ms: minimum: got -1e+400, want -1.7976931348623157e+308"},
		{"lateness_ms", "-" + maxText, ""},
		{"lateness_ms", "-1.7976931348623157e308", ""},
	} {
		r, err := DecodeResult(result(c.field, c.n))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.field, c.n, err)
		case c.want == "" && (math.IsInf(r.LatencyMs, 0) || math.IsInf(r.LatenessMs, 0)):
			t.Errorf("%s %s: decoded as infinite", c.field, c.n)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%s %s:\n got %v\nwant %s", c.field, c.n, err, c.want)
		}
	}
}

// What Go cannot read in an event the schema accepts is named by its JSON
// path, as the schema's problems are, not by Go struct and field names.
// The path is found in the bytes, so it has the array indexes that
// encoding/json's own field path leaves out.
func TestDecodeErrorsNameTheJSONPath(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{`{"devices":[{"device_id":1},{"token":"x","device_id":1.5}]}`, "/devices/1/device_id: cannot read number 1.5 as a 64-bit integer"},
		{`{"content":{"localized":{"de":{"title":"x"},"fr":{"title":5}}}}`, "/content/localized/fr/title: cannot read number as a string"},
		{`{"seq":{"a":[1]}}`, "/seq: cannot read object as a 64-bit integer"},
		{`{"devices":[[1]]}`, "/devices/0: cannot read array as an object"},
		{`{"content":{"data":{"k":true}}}`, "/content/data/k: cannot read bool as a string"},
		{`{"devices":{"token":"x"}}`, "/devices: cannot read object as an array"},
	} {
		err := json.Unmarshal([]byte(c.data), new(Batch))
		if err == nil {
			t.Fatalf("%s: no error", c.data)
		}
		if got := unmarshalProblem([]byte(c.data), err); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.data, got, c.want)
		}
	}
}

func TestPlainInteger(t *testing.T) {
	for _, c := range []struct {
		lit, want string
		ok        bool
	}{
		{"2", "", false}, // already plain
		{"2.0", "2", true},
		{"-2.50e1", "-25", true},
		{"1e2", "100", true},
		{"1E+2", "100", true},
		{"0.2e1", "2", true},
		{"120e-1", "12", true},
		{"100.000", "100", true},
		{"0.001e3", "1", true},
		{"-0.0", "0", true},
		{"0e999999999999999999999", "0", true},
		{"2.5", "", false},
		{"1e-1", "", false},
		{"0.5e1", "5", true},
		{"9.223372036854775807e18", "9223372036854775807", true},
		{"1.8446744073709551615e19", "18446744073709551615", true},
		{"1e20", "", false}, // 21 digits
		{"1e999999999999999999999", "", false},
		{"1e-999999999999999999999", "", false},
		{"1e1000000", "", false},
	} {
		got, ok := plainInteger(c.lit)
		if got != c.want || ok != c.ok {
			t.Errorf("plainInteger(%q) = %q, %v; want %q, %v", c.lit, got, ok, c.want, c.ok)
		}
	}
}
