package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
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
	all, err := compiled()
	if err != nil {
		return err
	}
	s, ok := all.byKind[kind]
	if !ok {
		return fmt.Errorf("schemas: unknown event kind %q (known: %s)", kind, strings.Join(Kinds, ", "))
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &InvalidError{Kind: kind, Problems: []string{notJSON(data, err)}}
	}
	if err := s.Validate(inst); err != nil {
		ve, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return &InvalidError{Kind: kind, Problems: []string{err.Error()}}
		}
		return &InvalidError{Kind: kind, Problems: problems(ve, all.notes)}
	}
	return nil
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
	}
	return e.ErrorKind.LocalizedString(english)
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

// decode validates data against kind's schema, then unmarshals it into v.
func decode(kind string, data []byte, v any) error {
	if err := Validate(kind, data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return &InvalidError{Kind: kind, Problems: []string{err.Error()}}
	}
	return nil
}

// DecodeCampaign validates and decodes a campaign event, applies defaults
// (version 1) and checks the rules a schema cannot express.
func DecodeCampaign(data []byte) (*Campaign, error) {
	var c Campaign
	if err := decode(KindCampaign, data, &c); err != nil {
		return nil, err
	}
	if c.Version == 0 {
		c.Version = 1
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// DecodeCampaignControl validates and decodes a control event.
func DecodeCampaignControl(data []byte) (*CampaignControl, error) {
	var c CampaignControl
	if err := decode(KindCampaignControl, data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// DecodeBatch validates and decodes a batch event and checks the option
// rules a schema cannot express.
func DecodeBatch(data []byte) (*Batch, error) {
	var b Batch
	if err := decode(KindBatch, data, &b); err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	return &b, nil
}

// DecodeResult validates and decodes a result event.
func DecodeResult(data []byte) (*Result, error) {
	var r Result
	if err := decode(KindResult, data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeDeadLetter validates and decodes a dead-letter event.
func DecodeDeadLetter(data []byte) (*DeadLetter, error) {
	var d DeadLetter
	if err := decode(KindDeadLetter, data, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DecodeDeviceRegistration validates and decodes a registration event.
func DecodeDeviceRegistration(data []byte) (*DeviceRegistration, error) {
	var d DeviceRegistration
	if err := decode(KindDeviceRegistration, data, &d); err != nil {
		return nil, err
	}
	return &d, nil
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
