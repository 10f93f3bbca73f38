package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed json/*.schema.json
var schemaFiles embed.FS

// Kinds of event, each with its schema file json/<kind>.v1.schema.json.
const (
	KindCampaign           = "campaign"
	KindCampaignControl    = "campaign-control"
	KindBatch              = "batch"
	KindResult             = "result"
	KindDeadLetter         = "dead-letter"
	KindDeviceRegistration = "device-registration"
)

const schemaBaseURL = "https://pushlane.dev/schemas/"

// compiledSchemas are the compiled event schemas plus the explanations of
// their negative rules.
type compiledSchemas struct {
	byKind map[string]*jsonschema.Schema
	// notes maps the location of a schema that has a "not" rule to that
	// schema's description: a failed "not" says nothing by itself, so the
	// schema files describe what each one forbids.
	notes map[string]string
	// app is campaign.v1's $defs/app, the rule for an app's name wherever
	// it is written (CheckAppName).
	app *jsonschema.Schema
}

// compiled holds the compiled schemas. The schema files are embedded
// constants, so compiling them once per process is safe to share.
var compiled = sync.OnceValues(func() (*compiledSchemas, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	entries, err := schemaFiles.ReadDir("json")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		raw, err := schemaFiles.ReadFile(path.Join("json", e.Name()))
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schemas: parse %s: %w", e.Name(), err)
		}
		if err := c.AddResource(schemaBaseURL+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("schemas: add %s: %w", e.Name(), err)
		}
	}
	out := &compiledSchemas{byKind: map[string]*jsonschema.Schema{}, notes: map[string]string{}}
	seen := map[*jsonschema.Schema]bool{}
	for _, kind := range Kinds {
		s, err := c.Compile(fmt.Sprintf("%s%s.v%d.schema.json", schemaBaseURL, kind, SchemaVersion))
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", kind, err)
		}
		out.byKind[kind] = s
		collectNotes(s, seen, out.notes)
	}
	if out.app, err = c.Compile(schemaBaseURL + "campaign.v1.schema.json#/$defs/app"); err != nil {
		return nil, fmt.Errorf("schemas: compile the app name rule: %w", err)
	}
	return out, nil
})

// Kinds lists every event kind.
var Kinds = []string{KindCampaign, KindCampaignControl, KindBatch, KindResult, KindDeadLetter, KindDeviceRegistration}

// collectNotes records the description of every schema reachable from s
// that carries a "not" rule.
func collectNotes(s *jsonschema.Schema, seen map[*jsonschema.Schema]bool, notes map[string]string) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if s.Not != nil && s.Description != "" {
		notes[s.Location] = s.Description
	}
	var subs []*jsonschema.Schema
	subs = append(subs, s.Ref, s.Not, s.If, s.Then, s.Else, s.PropertyNames, s.Items2020, s.Contains)
	subs = append(subs, s.AllOf...)
	subs = append(subs, s.AnyOf...)
	subs = append(subs, s.OneOf...)
	subs = append(subs, s.PrefixItems...)
	for _, p := range s.Properties {
		subs = append(subs, p)
	}
	for _, p := range s.PatternProperties {
		subs = append(subs, p)
	}
	if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
		subs = append(subs, ap)
	}
	if it, ok := s.Items.(*jsonschema.Schema); ok {
		subs = append(subs, it)
	}
	for _, sub := range subs {
		collectNotes(sub, seen, notes)
	}
}

// CheckAppName reports whether name is an app name the event schemas
// accept (campaign.v1.schema.json#/$defs/app): the configuration checks
// its apps with it, so that none is configured that no campaign can name.
// The error gives the rule and how name breaks it.
func CheckAppName(name string) error {
	all, err := compiled()
	if err != nil {
		return err
	}
	verr := all.app.Validate(name)
	if verr == nil {
		return nil
	}
	ve, ok := verr.(*jsonschema.ValidationError)
	if !ok {
		return fmt.Errorf("schemas: check app name %q: %w", name, verr)
	}
	var broken []string
	for _, p := range problems(ve, all.notes) {
		broken = append(broken, strings.TrimPrefix(p, "/: "))
	}
	return fmt.Errorf("not an app name (%s): %s", all.app.Description, strings.Join(broken, "; "))
}

// SchemaFile returns the raw JSON Schema of kind, for tools that publish or
// print it.
func SchemaFile(kind string) ([]byte, error) {
	return schemaFiles.ReadFile(fmt.Sprintf("json/%s.v%d.schema.json", kind, SchemaVersion))
}

// InvalidError says why an event does not match its schema. Problems lists
// each failing location and rule, e.g. `/audience/type: value must be one
// of "segment", "tokens"`.
type InvalidError struct {
	Kind     string
	Problems []string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Kind, strings.Join(e.Problems, "; "))
}

// Validate checks raw JSON bytes against the schema of kind. It returns an
// *InvalidError when the bytes are not JSON or do not match.
func Validate(kind string, data []byte) error {
	_, err := validate(kind, data)
	return err
}

// validate is Validate that also returns the event as the validator read
// it, numbers as json.Number, for decode to fall back on.
func validate(kind string, data []byte) (any, error) {
	all, err := compiled()
	if err != nil {
		return nil, err
	}
	s, ok := all.byKind[kind]
	if !ok {
		return nil, fmt.Errorf("schemas: unknown event kind %q (known: %s)", kind, strings.Join(Kinds, ", "))
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, &InvalidError{Kind: kind, Problems: []string{notJSON(data, err)}}
	}
	if err := s.Validate(inst); err != nil {
		ve, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return nil, &InvalidError{Kind: kind, Problems: []string{err.Error()}}
		}
		return nil, &InvalidError{Kind: kind, Problems: problems(ve, all.notes)}
	}
	return inst, nil
}

var english = message.NewPrinter(language.English)

// notJSON words a syntax error with the byte offset where it was found, so
// an operator can find it in a file or a dead letter.
func notJSON(data []byte, err error) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Sprintf("not JSON: %d bytes, no value", len(data))
	}
	var syn *json.SyntaxError
	var v any
	if uerr := json.Unmarshal(data, &v); errors.As(uerr, &syn) {
		return fmt.Sprintf("not JSON: %s at byte %d", syn.Error(), syn.Offset)
	} else if uerr != nil {
		err = uerr
	}
	return "not JSON: " + err.Error()
}

// problems flattens the validator's tree of causes to its leaves, which are
// the messages a person can act on; the inner nodes only repeat "allOf
// failed" and the like.
func problems(ve *jsonschema.ValidationError, notes map[string]string) []string {
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, "/"+strings.Join(e.InstanceLocation, "/")+": "+describe(e, notes))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.Strings(out)
	return dedupe(out)
}

// describe words one failed rule. The validator's own wording is kept
// where it says what was expected and what was found; where it does not
// (const, enum: no value found; not: nothing at all), it is replaced.
func describe(e *jsonschema.ValidationError, notes map[string]string) string {
	switch k := e.ErrorKind.(type) {
	case *kind.Not:
		if note, ok := notes[e.SchemaURL]; ok {
			return note
		}
		_, rule, _ := strings.Cut(e.SchemaURL, "#")
		return "must not match the rule at " + rule + "/not"
	case *kind.Const:
		return fmt.Sprintf("must be %s, got %s", display(k.Want), display(k.Got))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = display(w)
		}
		if len(want) == 1 {
			return fmt.Sprintf("must be %s, got %s", want[0], display(k.Got))
		}
		return fmt.Sprintf("must be one of %s, got %s", strings.Join(want, ", "), display(k.Got))
	case *kind.Minimum:
		if s, ok := integerBound("minimum", k.Got, k.Want); ok {
			return s
		}
	case *kind.Maximum:
		if s, ok := integerBound("maximum", k.Got, k.Want); ok {
			return s
		}
	}
	return e.ErrorKind.LocalizedString(english)
}

// integerBound words a failed minimum or maximum between integers with
// every digit: the validator's wording goes through float64, which prints
// 2^63 and the int64 maximum alike ("got 9.223372036854776×10¹⁸, want
// 9.223372036854776×10¹⁸").
func integerBound(rule string, got, want *big.Rat) (string, bool) {
	if !got.IsInt() || !want.IsInt() {
		return "", false
	}
	return fmt.Sprintf("%s: got %s, want %s", rule, integerText(got), integerText(want)), true
}

// integerText writes n with every digit up to maxPlainDigits+4 of them,
// beyond which a short form says as much: 1e100000 is not worth a hundred
// thousand digits in a dead letter's reason. The short form keeps 22
// significant digits, so a number just over the largest float64 (a
// result's latency_ms maximum, 1.7976931348623157e308) does not read as
// the bound itself.
func integerText(n *big.Rat) string {
	s := n.Num().String()
	if len(strings.TrimPrefix(s, "-")) > maxPlainDigits+4 {
		return new(big.Float).SetPrec(128).SetRat(n).Text('g', 22)
	}
	return groupDigits(s)
}

// groupDigits writes an integer's digits in groups of three, as the
// validator's English messages do (5,000).
func groupDigits(n string) string {
	sign, digits := "", n
	if strings.HasPrefix(n, "-") {
		sign, digits = "-", n[1:]
	}
	var b strings.Builder
	b.WriteString(sign)
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

// display quotes a JSON value the way the validator's messages do.
func display(v any) string {
	if s, ok := v.(string); ok {
		return "'" + s + "'"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// decode validates data against kind's schema, then unmarshals it into a
// new T.
//
// JSON Schema's "integer" is any number whose fraction is zero, however it
// is written: 2, 2.0 and 0.2e1 are the same integer to a producer's
// validator, while encoding/json reads only the first into an int. The
// plain unmarshal goes first, so an event written with plain integers (as
// encoders write them) costs nothing more; only when it fails is the
// validator's copy of the event re-encoded with plain integers and
// unmarshalled again.
func decode[T any](kind string, data []byte) (*T, error) {
	inst, err := validate(kind, data)
	if err != nil {
		return nil, err
	}
	v := new(T)
	err = json.Unmarshal(data, v)
	if err == nil {
		return v, nil
	}
	if plainIntegers(inst) {
		plain, merr := json.Marshal(inst)
		if merr != nil {
			return nil, fmt.Errorf("schemas: re-encode %s with plain integers: %w", kind, merr)
		}
		data, v = plain, new(T)
		if err = json.Unmarshal(data, v); err == nil {
			return v, nil
		}
	}
	return nil, &InvalidError{Kind: kind, Problems: []string{unmarshalProblem(data, err)}}
}

// plainIntegers rewrites in place every number of v (as the validator
// reads JSON: maps, slices, json.Number) that is an integer written with a
// fraction or an exponent, and reports whether it rewrote any.
func plainIntegers(v any) bool {
	changed := false
	rewrite := func(e any) (any, bool) {
		if n, ok := e.(json.Number); ok {
			if p, ok := plainInteger(string(n)); ok {
				return json.Number(p), true
			}
			return e, false
		}
		return e, plainIntegers(e)
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			var c bool
			if v[k], c = rewrite(e); c {
				changed = true
			}
		}
	case []any:
		for i, e := range v {
			var c bool
			if v[i], c = rewrite(e); c {
				changed = true
			}
		}
	}
	return changed
}

// maxPlainDigits bounds the integers plainInteger writes out: 20 digits
// hold every int64 and uint64, and a longer one is out of range of every
// integer field whatever its spelling, so it is left as written (a float
// field reads it the same either way) instead of being spelled out, which
// for 1e1000000 would take a megabyte.
const maxPlainDigits = 20

// plainInteger returns the JSON number literal lit as a plain integer
// ("2.0" and "0.2e1" are "2", "-0.0" is "0") when it is written with a
// fraction or an exponent, has no fractional part and has at most
// maxPlainDigits digits. lit is a valid JSON number: the validator read it.
func plainInteger(lit string) (string, bool) {
	if !strings.ContainsAny(lit, ".eE") {
		return "", false
	}
	neg := strings.HasPrefix(lit, "-")
	mant, expText := strings.TrimPrefix(lit, "-"), ""
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		mant, expText = mant[:i], mant[i+1:]
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return "0", true
	}
	exp := 0
	if expText != "" {
		e, err := strconv.Atoi(expText)
		if err != nil {
			return "", false // an exponent beyond int: too large an integer, or a fraction
		}
		exp = e
	}
	// Outside these bounds the value is a fraction or over maxPlainDigits
	// digits; within them, scale cannot overflow.
	if exp < -len(mant) || exp > len(mant)+maxPlainDigits {
		return "", false
	}
	// The value is digits × 10^scale.
	scale := exp - len(frac)
	trailingZeros := len(digits) - len(strings.TrimRight(digits, "0"))
	if scale < -trailingZeros || len(digits)+scale > maxPlainDigits {
		return "", false
	}
	sign := ""
	if neg {
		sign = "-"
	}
	if scale < 0 {
		return sign + digits[:len(digits)+scale], true
	}
	return sign + digits + strings.Repeat("0", scale), true
}

// unmarshalProblem words an unmarshal error of an event the schema
// accepted, naming the field by its JSON path, as the schema's own
// problems do, rather than by the Go struct encoding/json names.
func unmarshalProblem(data []byte, err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return "cannot read the event: " + err.Error()
	}
	at, ok := pathAt(data, te.Offset)
	if !ok {
		// encoding/json's own path leaves out array indexes.
		at = "/" + strings.ReplaceAll(te.Field, ".", "/")
	}
	return fmt.Sprintf("%s: cannot read %s as %s", at, te.Value, jsonKind(te.Type))
}

// jsonKind says what a Go type holds in the event's own terms.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("a %d-bit integer", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an unsigned %d-bit integer", t.Bits())
	case reflect.Float32, reflect.Float64:
		return fmt.Sprintf("a %d-bit float", t.Bits())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	}
	return t.Kind().String()
}

// pathAt returns the path (as the validator writes it: /devices/3/device_id)
// of the value of data that ends at offset, or whose object or array
// starts just before it: encoding/json reports a value it cannot store by
// the offset after a scalar, or after the opening { or [ of a container.
func pathAt(data []byte, offset int64) (string, bool) {
	type level struct {
		array   bool
		index   int
		key     string
		wantKey bool
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			b.WriteByte('/')
			if l.array {
				b.WriteString(strconv.Itoa(l.index))
			} else {
				b.WriteString(l.key)
			}
		}
		if b.Len() == 0 {
			return "/"
		}
		return b.String()
	}
	// done moves the innermost container past the value just read.
	done := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].wantKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			if key, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].wantKey = key, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if dec.InputOffset() >= offset {
				return path(), true
			}
			stack = append(stack, level{array: tok == json.Delim('['), wantKey: tok == json.Delim('{')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		default:
			if dec.InputOffset() >= offset {
				return path(), true
			}
			done()
		}
	}
}

// DecodeCampaign validates and decodes a campaign event, applies defaults
// (version 1) and checks the rules a schema cannot express.
func DecodeCampaign(data []byte) (*Campaign, error) {
	c, err := decode[Campaign](KindCampaign, data)
	if err != nil {
		return nil, err
	}
	if c.Version == 0 {
		c.Version = 1
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// DecodeCampaignControl validates and decodes a control event.
func DecodeCampaignControl(data []byte) (*CampaignControl, error) {
	return decode[CampaignControl](KindCampaignControl, data)
}

// DecodeBatch validates and decodes a batch event and checks the option
// rules a schema cannot express.
func DecodeBatch(data []byte) (*Batch, error) {
	b, err := decode[Batch](KindBatch, data)
	if err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeResult validates and decodes a result event.
func DecodeResult(data []byte) (*Result, error) {
	return decode[Result](KindResult, data)
}

// DecodeDeadLetter validates and decodes a dead-letter event.
func DecodeDeadLetter(data []byte) (*DeadLetter, error) {
	return decode[DeadLetter](KindDeadLetter, data)
}

// DecodeDeviceRegistration validates and decodes a registration event and
// checks the rule a schema cannot express.
func DecodeDeviceRegistration(data []byte) (*DeviceRegistration, error) {
	r, err := decode[DeviceRegistration](KindDeviceRegistration, data)
	if err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// Decode validates and decodes an event of kind, returning a pointer to its
// Go type (*Campaign, *CampaignControl, ...). Tools that take the kind as
// input use it; stages call the typed Decode* functions.
func Decode(kind string, data []byte) (any, error) {
	var v any
	var err error
	switch kind {
	case KindCampaign:
		v, err = DecodeCampaign(data)
	case KindCampaignControl:
		v, err = DecodeCampaignControl(data)
	case KindBatch:
		v, err = DecodeBatch(data)
	case KindResult:
		v, err = DecodeResult(data)
	case KindDeadLetter:
		v, err = DecodeDeadLetter(data)
	case KindDeviceRegistration:
		v, err = DecodeDeviceRegistration(data)
	default:
		return nil, fmt.Errorf("schemas: unknown event kind %q (known: %s)", kind, strings.Join(Kinds, ", "))
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}
