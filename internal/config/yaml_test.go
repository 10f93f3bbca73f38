package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlSecret stands for a password written unquoted after a YAML
// indicator; no error may show it.
const yamlSecret = "s3cretPa55"

const (
	wantAlias  = "an alias (*): a config uses no aliases; quote a value that starts with *"
	wantAnchor = "an anchor (&): a config uses no anchors; quote a value that starts with &"
	wantTag    = "a tag (! or !!): a config uses no tags; quote a value that starts with !"
)

// An unquoted value starting with "*", "&" or "!" is YAML syntax, not
// text: yaml.v3's errors quoted the rest of it (the password), and an
// anchor or tag with nothing after it loaded as an empty password. Each is
// refused by line and key, without the file's text.
func TestYAMLIndicatorsAreRefusedWithoutTheirText(t *testing.T) {
	sasl := "kafka:\n  sasl:\n    mechanism: plain\n    username: pushlane\n    password: "
	cases := []struct {
		name, yaml string
		want       string // after "config: read <file>: "
	}{
		{"undefined alias", "clickhouse:\n  password: *" + yamlSecret + "\n",
			"yaml: line 2: clickhouse.password: " + wantAlias},
		{"undefined alias for the SASL password", sasl + "*" + yamlSecret + "\n",
			"yaml: line 5: kafka.sasl.password: " + wantAlias},
		{"undefined alias in a flow section", "clickhouse: {addr: [ch:9000], password: *" + yamlSecret + "}\n",
			"yaml: line 1: clickhouse.password: " + wantAlias},
		{"undefined alias, quoted text of the same name before it", "log:\n  level: \"*" + yamlSecret + "\"\n  format: *" + yamlSecret + "\n",
			"yaml: line 3: log.format: " + wantAlias},
		{"undefined aliases of two names", "clickhouse:\n  password: *" + yamlSecret + "\n  username: *" + yamlSecret + "x\n",
			"yaml: line 2: clickhouse.password: " + wantAlias + "; yaml: line 3: clickhouse.username: " + wantAlias},
		{"undefined alias as a key", "*" + yamlSecret + " : 1\n",
			"yaml: line 1: " + wantAlias},
		{"undefined alias before a syntax error, which hides its line", "clickhouse:\n  password: *" + yamlSecret + "\n  addr: [\n",
			"yaml: " + wantAlias},
		{"defined anchor and alias", "log:\n  level: &" + yamlSecret + " info\n  format: *" + yamlSecret + "\n",
			"yaml: line 2: log.level: " + wantAnchor + "; yaml: line 3: log.format: " + wantAlias},
		{"anchor alone", "clickhouse:\n  password: &" + yamlSecret + "\n",
			"yaml: line 2: clickhouse.password: " + wantAnchor},
		{"anchor alone for the SASL password", sasl + "&" + yamlSecret + "\n",
			"yaml: line 5: kafka.sasl.password: " + wantAnchor},
		{"anchor on a section", "log: &" + yamlSecret + "\n  level: info\n",
			"yaml: line 1: log: " + wantAnchor},
		{"local tag alone", "clickhouse:\n  password: !" + yamlSecret + "\n",
			"yaml: line 2: clickhouse.password: " + wantTag},
		{"standard tag that does not fit", "clickhouse:\n  password: !!int " + yamlSecret + "\n",
			"yaml: line 2: clickhouse.password: " + wantTag},
		{"standard tag that fits", "clickhouse:\n  password: !!str 12345\n",
			"yaml: line 2: clickhouse.password: " + wantTag},
		{"tag in a list", "kafka:\n  brokers: [a:9092, !" + yamlSecret + " b:9092]\n",
			"yaml: line 2: kafka.brokers: " + wantTag},
		{"anchor inside a password written as a section", "clickhouse:\n  password: {" + yamlSecret + ": &a x}\n",
			"yaml: line 2: clickhouse.password: " + wantAnchor},
		{"anchor inside a section in a list", "kafka:\n  brokers: [{" + yamlSecret + ": &a x}]\n",
			"yaml: line 2: kafka.brokers: " + wantAnchor},
		{"merge key", "log:\n  <<: {level: info}\n",
			"yaml: line 2: log: a merge key (<<): a config uses no merge keys"},
		{"repeated key", "log:\n  level: info\n  level: debug\n",
			"yaml: line 3: log.level: given twice (first at line 2)"},
		{"repeated key inside a password written as a section", "clickhouse:\n  password: {" + yamlSecret + ": 1, " + yamlSecret + ": 2}\n",
			"yaml: line 2: clickhouse.password: given twice (first at line 2)"},
		{"section as a key", "log:\n  ? {" + yamlSecret + ": 1}\n  : x\n",
			"yaml: line 2: log: a key that is a list or a section: a key is a name"},
		{"a value, not a section", yamlSecret + "\n",
			"yaml: line 1: the file must be a section of keys (key: value), not a list or a value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := loadYAML(t, dir, c.yaml)
			want := "config: read " + filepath.Join(dir, "pushlane.yaml") + ": " + c.want
			if err == nil || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
			if strings.Contains(err.Error(), yamlSecret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// The parser's own syntax errors are fixed texts and are passed on, with
// yaml.v3's line (which, for some, is the line before).
func TestYAMLSyntaxErrorsArePassedOn(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"kafka: [\n", "yaml: line 1: did not find expected node content"},
		{"log:\n  level: [info\n  format: json\n", "yaml: line 1: did not find expected ',' or ']'"},
		{"log:\n  level: \"" + yamlSecret + "\n", "yaml: line 2: found unexpected end of stream"},
	} {
		dir := t.TempDir()
		_, err := loadYAML(t, dir, c.yaml)
		want := "config: read " + filepath.Join(dir, "pushlane.yaml") + ": " + c.want
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got  %v\nwant %s", c.yaml, err, want)
		}
	}
}

// What the checks let through still loads as koanf's parser read it.
func TestYAMLParserReadsPlainConfig(t *testing.T) {
	got, err := yamlParser{}.Unmarshal([]byte("# only keys\nlog:\n  level: \"*" + yamlSecret + "\"\n  format: '&x'\nkafka:\n  brokers: [a:9092, \"!b\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := got["log"].(map[string]any)
	kafka, _ := got["kafka"].(map[string]any)
	brokers, _ := kafka["brokers"].([]any)
	if log["level"] != "*"+yamlSecret || log["format"] != "&x" || len(brokers) != 2 || brokers[1] != "!b" {
		t.Errorf("read %#v", got)
	}
	for _, empty := range []string{"", "# nothing\n", "~\n"} {
		if got, err := (yamlParser{}).Unmarshal([]byte(empty)); err != nil || len(got) != 0 {
			t.Errorf("%q: read %#v, %v", empty, got, err)
		}
	}
}

// A yaml.v3 message that quotes the file (in any of its three ways) is
// replaced by its line; the fixed problems, quoting one indicator, are not.
func TestYAMLMessagesThatMayQuoteTheFileAreHidden(t *testing.T) {
	hidden := "(details hidden: the YAML parser's message may quote the file, and so a secret)"
	for _, c := range []struct{ in, want string }{
		{"yaml: line 3: did not find expected ',' or '}'", "yaml: line 3: did not find expected ',' or '}'"},
		{"yaml: did not find expected alphabetic or numeric character", "yaml: did not find expected alphabetic or numeric character"},
		{"yaml: unknown anchor '" + yamlSecret + "' referenced", "yaml: not valid " + hidden},
		{"yaml: unknown anchor 'x' referenced", "yaml: unknown anchor 'x' referenced"}, // one character: the indicators' form
		{"yaml: cannot decode !!str `" + yamlSecret + "` as a !!int", "yaml: not valid " + hidden},
		{"yaml: line 4: invalid map key: \"" + yamlSecret + "\"", "yaml: line 4: not valid here " + hidden},
		{"yaml: line 4: x\n" + yamlSecret, "yaml: line 4: not valid here " + hidden},
		{"open " + yamlSecret, "yaml: not valid " + hidden},
	} {
		if got := parseError(errors.New(c.in)).Error(); got != c.want {
			t.Errorf("%q:\n got  %s\nwant %s", c.in, got, c.want)
		}
	}
	te := &yaml.TypeError{Errors: []string{"line 2: cannot unmarshal !!str `" + yamlSecret + "` into int", "line 5: mapping key \"" + yamlSecret + "\" already defined at line 4"}}
	want := "yaml: line 2: not valid here " + hidden + "; yaml: line 5: not valid here " + hidden
	if got := decodeError(te).Error(); got != want {
		t.Errorf("decode error:\n got  %s\nwant %s", got, want)
	}
	if got, want := decodeError(errors.New("yaml: anchor '"+yamlSecret+"' value contains itself")).Error(), "yaml: not valid "+hidden; got != want {
		t.Errorf("decode error:\n got  %s\nwant %s", got, want)
	}
}
