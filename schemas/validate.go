package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
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

// compiled holds the compiled schemas. The schema files are embedded
// constants, so compiling them once per process is safe to share.
var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
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
	out := map[string]*jsonschema.Schema{}
	for _, kind := range []string{KindCampaign, KindCampaignControl, KindBatch, KindResult, KindDeadLetter, KindDeviceRegistration} {
		s, err := c.Compile(fmt.Sprintf("%s%s.v%d.schema.json", schemaBaseURL, kind, SchemaVersion))
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", kind, err)
		}
		out[kind] = s
	}
	return out, nil
})

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
	s, ok := all[kind]
	if !ok {
		return fmt.Errorf("schemas: unknown event kind %q", kind)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &InvalidError{Kind: kind, Problems: []string{"not JSON: " + err.Error()}}
	}
	if err := s.Validate(inst); err != nil {
		ve, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return &InvalidError{Kind: kind, Problems: []string{err.Error()}}
		}
		return &InvalidError{Kind: kind, Problems: problems(ve)}
	}
	return nil
}

var english = message.NewPrinter(language.English)

// problems flattens the validator's tree of causes to its leaves, which are
// the messages a person can act on; the inner nodes only repeat "allOf
// failed" and the like.
func problems(ve *jsonschema.ValidationError) []string {
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + strings.Join(e.InstanceLocation, "/")
			msg := loc + ": " + e.ErrorKind.LocalizedString(english)
			// Negative rules ("not") say nothing by themselves; the schema
			// location names the rule that was broken.
			if _, rule, ok := strings.Cut(e.SchemaURL, "#"); ok && strings.HasSuffix(rule, "/not") {
				msg += " (rule " + rule + ")"
			}
			out = append(out, msg)
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

// DecodeBatch validates and decodes a batch event.
func DecodeBatch(data []byte) (*Batch, error) {
	var b Batch
	if err := decode(KindBatch, data, &b); err != nil {
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
