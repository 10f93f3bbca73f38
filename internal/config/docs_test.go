package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// leafKeys lists every configuration key of t, with "<name>" for map
// levels, and the type word docs/config.md uses for it.
func leafKeys(t reflect.Type, prefix string, out map[string]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		out[prefix] = "duration"
	case t.Kind() == reflect.Map:
		leafKeys(t.Elem(), join("<name>"), out)
	case t.Kind() == reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			leafKeys(f.Type, join(f.Tag.Get("koanf")), out)
		}
	case t.Kind() == reflect.Slice:
		out[prefix] = "list"
	case t.Kind() == reflect.Bool:
		out[prefix] = "bool"
	case t.Kind() == reflect.String:
		out[prefix] = "string"
	default:
		out[prefix] = "integer"
	}
}

// envName is the environment variable of key.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// defaultCell is how docs/config.md shows key's default.
func defaultCell(key string) string {
	v, ok := Defaults()[key]
	if rest, isApp := strings.CutPrefix(key, "apps.<name>."); isApp {
		v, ok = appDefaults[rest]
		if rest == "rate_per_second" {
			v, ok = 0, true // the zero value is the documented default
		}
	}
	if !ok {
		return "—"
	}
	if l, isList := v.([]string); isList {
		return "`" + strings.Join(l, ",") + "`"
	}
	return "`" + fmt.Sprint(v) + "`"
}

type docRow struct{ typ, def, env, meaning string }

func readReference(t *testing.T) map[string]docRow {
	t.Helper()
	raw, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 5 {
			continue // the short table of environment examples
		}
		key := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, dup := rows[key]; dup {
			t.Errorf("docs/config.md documents %s twice", key)
		}
		rows[key] = docRow{typ: cells[1], def: cells[2], env: strings.Trim(cells[3], "`"), meaning: strings.TrimSpace(cells[4])}
	}
	return rows
}

// TestReferenceDocumentsEveryKey fails when a key is added, removed,
// renamed or re-defaulted without docs/config.md following.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	keys := map[string]string{}
	leafKeys(reflect.TypeOf(Config{}), "", keys)
	if len(keys) < 80 {
		t.Fatalf("found only %d keys: %v", len(keys), keys)
	}
	rows := readReference(t)
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, key := range names {
		row, ok := rows[key]
		if !ok {
			t.Errorf("docs/config.md does not document %s", key)
			continue
		}
		if row.typ != keys[key] {
			t.Errorf("%s: documented type %q, is %q", key, row.typ, keys[key])
		}
		if want := envName(key); row.env != want {
			t.Errorf("%s: documented variable %q, is %q", key, row.env, want)
		}
		if want := defaultCell(key); row.def != want {
			t.Errorf("%s: documented default %q, is %q", key, row.def, want)
		}
		if len(row.meaning) < 10 {
			t.Errorf("%s: no meaning documented", key)
		}
	}
	for key := range rows {
		if _, ok := keys[key]; !ok {
			t.Errorf("docs/config.md documents %s, which is not a key", key)
		}
	}
	// Every default belongs to a documented key.
	for key := range Defaults() {
		if _, ok := keys[key]; !ok {
			t.Errorf("Defaults() has %s, which is not a key", key)
		}
	}
	for key := range appDefaults {
		if _, ok := keys["apps.<name>."+key]; !ok {
			t.Errorf("appDefaults has %s, which is not a key", key)
		}
	}
}

// TestDocumentedVariablesWork sets one variable per documented scalar key
// and checks Load reads it into that key, so the env column is not just
// consistent with itself.
func TestDocumentedVariablesWork(t *testing.T) {
	rows := readReference(t)
	for key, row := range rows {
		if strings.Contains(key, "<name>") {
			continue // covered by TestEnvironmentOverrides and TestEnvironmentCreatesAnApp
		}
		var value string
		switch row.typ {
		case "string":
			if strings.HasSuffix(key, "_file") || key == "mysql.dsn" || strings.HasPrefix(key, "log.") || key == "kafka.sasl.mechanism" {
				continue // validated values; covered elsewhere
			}
			value = "v-" + strings.ReplaceAll(key, ".", "-")
			if key == "clickhouse.database" {
				value = "v_clickhouse_database" // an identifier
			}
			if key == "http.addr" {
				value = "127.0.0.1:18080" // an address
			}
		default:
			continue
		}
		environ := []string{row.env + "=" + value}
		// Settings that are used only beside another are set with it.
		switch {
		case strings.HasSuffix(key, ".tls.server_name"):
			environ = append(environ, strings.TrimSuffix(row.env, "SERVER_NAME")+"ENABLED=true")
		case key == "kafka.sasl.username":
			environ = append(environ, "PUSHLANE_KAFKA__SASL__MECHANISM=plain")
		case key == "kafka.sasl.password":
			environ = append(environ, "PUSHLANE_KAFKA__SASL__MECHANISM=plain", "PUSHLANE_KAFKA__SASL__USERNAME=u")
		}
		t.Run(key, func(t *testing.T) {
			cfg, err := Load("", environ)
			if err != nil {
				t.Fatal(err)
			}
			if got := lookup(reflect.ValueOf(*cfg), strings.Split(key, ".")); got != value {
				t.Errorf("%s=%s set %s to %q", row.env, value, key, got)
			}
		})
	}
}

// lookup reads the string field at a koanf key path.
func lookup(v reflect.Value, path []string) string {
	for _, p := range path {
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("koanf") == p {
				v = v.Field(i)
				break
			}
		}
	}
	return v.String()
}
