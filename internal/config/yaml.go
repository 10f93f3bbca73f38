package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlParser reads the configuration file for koanf in place of koanf's own
// YAML parser (which is go.yaml.in/yaml/v3 with its errors passed through).
// That library's errors may quote the file's text: an unquoted password
// starting with "*" is an alias, and "unknown anchor 's3cret' referenced"
// is the rest of the password; "!!int s3cret" is "cannot decode !!str
// `s3cret` as a !!int". An anchor or a local tag with nothing after it
// ("&s3cret", "!s3cret") is no error at all, but an empty password. So the
// file is read as a tree first, and anchors, aliases and tags, which a
// configuration has no use for, are refused by line and key; the errors
// that remain are shown only when they cannot quote the file.
type yamlParser struct{}

// Unmarshal implements koanf.Parser.
func (yamlParser) Unmarshal(b []byte) (map[string]any, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		if m := unknownAnchor.FindStringSubmatch(err.Error()); m != nil {
			return nil, locateUnknownAlias(b, m[1])
		}
		return nil, parseError(err)
	}
	// yaml.Unmarshal reads the first document only: the settings of a
	// second (after "---"), unknown keys and all, were dropped silently.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, parseError(err)
		}
		if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
			return nil, &yamlError{problems: []string{fmt.Sprintf("yaml: line %d: a second document (after ---): the configuration is one document", next.Content[0].Line)}}
		}
	}
	c := yamlCheck{}
	c.document(&doc)
	if len(c.problems) > 0 {
		return nil, &yamlError{problems: c.problems}
	}
	var out map[string]any
	if err := doc.Decode(&out); err != nil {
		// Not expected once the checks pass, but a decoding error
		// quotes the values it could not decode.
		return nil, decodeError(err)
	}
	return out, nil
}

// Marshal implements koanf.Parser.
func (yamlParser) Marshal(m map[string]any) ([]byte, error) {
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return b, nil
}

// yamlError lists the problems of a configuration file, each "yaml: line
// N: key: what", without the file's text.
type yamlError struct{ problems []string }

func (e *yamlError) Error() string { return strings.Join(e.problems, "; ") }

// What the refused YAML constructs are called. Each says how to write the
// value most likely meant: text that happens to start with the indicator.
const (
	yamlAlias  = "an alias (*): a config uses no aliases; quote a value that starts with *"
	yamlAnchor = "an anchor (&): a config uses no anchors; quote a value that starts with &"
	yamlTag    = "a tag (! or !!): a config uses no tags; quote a value that starts with !"
	yamlMerge  = "a merge key (<<): a config uses no merge keys"
	yamlNotKey = "a key that is a list or a section: a key is a name"
	yamlRoot   = "the file must be a section of keys (key: value), not a list or a value"
	yamlHidden = "(details hidden: the YAML parser's message may quote the file, and so a secret)"
)

// unknownAnchor is yaml.v3's error for an alias to an undefined anchor,
// the name being the alias's text (without the "*"), which yaml.v3 scans as
// letters, digits, "_" and "-".
var unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '([0-9A-Za-z_-]+)' referenced$`)

// aliasStandIn replaces an alias to an undefined anchor so that the file
// can be read as a tree and the alias found in it, by line and key.
const aliasStandIn = "pushlane-config-undefined-alias-0ac6f1"

// locateUnknownAlias reports an alias to an anchor the file does not
// define. yaml.v3 stops at it without its line; with every such alias of
// that name replaced by a plain stand-in, the tree says where it is.
// Replacing inside quoted text or a comment too is harmless: only a plain
// value that is exactly the stand-in was an alias.
func locateUnknownAlias(b []byte, name string) error {
	text := b
	for range 32 { // each round replaces the aliases of one more name
		alias := regexp.MustCompile(`\*` + regexp.QuoteMeta(name) + "([\\s?:,\\]}%@`]|$)")
		text = alias.ReplaceAll(text, []byte(aliasStandIn+"${1}"))
		var doc yaml.Node
		err := yaml.Unmarshal(text, &doc)
		if err == nil {
			c := yamlCheck{standIn: true}
			c.document(&doc)
			if len(c.problems) > 0 {
				return &yamlError{problems: c.problems}
			}
			break
		}
		m := unknownAnchor.FindStringSubmatch(err.Error())
		if m == nil {
			break
		}
		name = m[1]
	}
	return errors.New("yaml: " + yamlAlias)
}

// yamlCheck walks a YAML tree, noting what a configuration refuses.
type yamlCheck struct {
	problems []string
	// standIn: a plain aliasStandIn value is an alias (locateUnknownAlias).
	standIn bool
}

func (c *yamlCheck) add(n *yaml.Node, path []string, what string) {
	where := "yaml: line " + strconv.Itoa(n.Line) + ": "
	if key := yamlKey(path); key != "" {
		where += key + ": "
	}
	c.problems = append(c.problems, where+what)
}

func (c *yamlCheck) document(doc *yaml.Node) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return // an empty file
	}
	root := doc.Content[0]
	c.node(root, nil, true)
	if root.Kind != yaml.MappingNode && root.ShortTag() != "!!null" && len(c.problems) == 0 {
		c.add(root, nil, yamlRoot)
	}
}

// node checks n, found at path. Keys below a list are not added to path
// (named is false): a list holds text, and a section inside one may be a
// secret written unquoted ("- {s3cret}").
func (c *yamlCheck) node(n *yaml.Node, path []string, named bool) {
	switch {
	case n.Kind == yaml.AliasNode, c.isStandIn(n):
		c.add(n, path, yamlAlias)
	case n.Anchor != "":
		c.add(n, path, yamlAnchor)
	case n.Style&yaml.TaggedStyle != 0:
		c.add(n, path, yamlTag)
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			c.node(item, path, false)
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			c.node(k, path, named)
			sub := path
			switch {
			case k.Kind != yaml.ScalarNode && k.Kind != yaml.AliasNode:
				c.add(k, path, yamlNotKey)
			case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" && k.Style&yaml.TaggedStyle == 0:
				c.add(k, path, yamlMerge)
			case k.Kind == yaml.ScalarNode && !c.isStandIn(k) && named:
				sub = append(path[:len(path):len(path)], k.Value)
			}
			if k.Kind == yaml.ScalarNode {
				// yaml.v3 refuses a repeated key quoting it, and the key
				// may be a secret written as a section ({s3cret: 1}).
				if first, dup := seen[k.Value]; dup {
					c.add(k, sub, "given twice (first at line "+strconv.Itoa(first)+")")
				} else {
					seen[k.Value] = k.Line
				}
			}
			c.node(v, sub, named)
		}
	}
}

func (c *yamlCheck) isStandIn(n *yaml.Node) bool {
	return c.standIn && n.Kind == yaml.ScalarNode && n.Style == 0 && n.Value == aliasStandIn
}

// yamlKey is path as errors name a key, cut where a value's key ends: what
// lies below it is the value's own text (a password written "{s3cret}").
func yamlKey(path []string) string {
	if _, _, scalar := resolve(configType, path); scalar > 0 {
		path = path[:scalar]
	}
	return strings.Join(path, ".")
}

// oneCharQuote is a quoted indicator in yaml.v3's fixed problem texts
// ("did not find expected ',' or ']'").
var oneCharQuote = regexp.MustCompile(`'[^']'`)

// yamlLine is the line yaml.v3 puts at the start of a problem.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// parseError passes on a yaml.v3 parse error only if it cannot quote the
// file. The scanner's and parser's problems are fixed texts, quoting at
// most a one-character indicator; yaml.v3 quotes the file's text in
// backquotes, double quotes or single quotes around a name, and an error
// so quoted, or of any other shape, is replaced by its line alone.
func parseError(err error) error {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "yaml: ")
	if ok && !strings.ContainsAny(oneCharQuote.ReplaceAllString(rest, ""), "'\"`\n") {
		return errors.New(msg)
	}
	return hiddenError(msg)
}

// decodeError replaces a yaml.v3 decoding error, which quotes the values
// it could not decode, by the lines it names.
func decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return hiddenError(err.Error())
	}
	var problems []string
	for _, e := range te.Errors {
		problems = append(problems, hiddenError(e).Error())
	}
	return &yamlError{problems: problems}
}

// hiddenError is "yaml: line N: ..." with the line of msg, if it has one,
// and none of its text.
func hiddenError(msg string) error {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return errors.New("yaml: line " + m[1] + ": not valid here " + yamlHidden)
	}
	return errors.New("yaml: not valid " + yamlHidden)
}
