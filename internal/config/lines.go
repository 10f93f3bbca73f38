package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Lines is the configuration as "key = value" lines, sorted, with the keys
// the file and the environment use and secrets masked: what pushctl config
// and every stage's -check-config print.
func (c *Config) Lines() []string {
	var lines []string
	flatten(reflect.ValueOf(c.Redacted()), "", &lines)
	sort.Strings(lines)
	return lines
}

// flatten writes "key = value" for every leaf of a config value, with the
// koanf key names the file and the environment use.
func flatten(v reflect.Value, prefix string, out *[]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		*out = append(*out, fmt.Sprintf("%s = %s", prefix, time.Duration(v.Int())))
	case v.Kind() == reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			flatten(v.Field(i), join(v.Type().Field(i).Tag.Get("koanf")), out)
		}
	case v.Kind() == reflect.Map:
		keys := v.MapKeys()
		for _, k := range keys {
			flatten(v.MapIndex(k), join(k.String()), out)
		}
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		*out = append(*out, fmt.Sprintf("%s = [%s]", prefix, strings.Join(parts, ", ")))
	case v.Kind() == reflect.String:
		*out = append(*out, fmt.Sprintf("%s = %q", prefix, v.String()))
	default:
		*out = append(*out, fmt.Sprintf("%s = %v", prefix, v.Interface()))
	}
}
