package main

import (
	"context"
	"flag"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

func configCommand() *command {
	return &command{
		name:    "config",
		args:    "",
		summary: "Validate the configuration and print it, secrets masked",
		details: `
Loads the configuration as every stage does (the -config file, then PUSHLANE_*
variables), validates it, and prints every key with its effective value, one per
line, sorted. Secrets are masked. A problem exits 2 naming the key.`,
		examples: []string{
			"pushctl -config /etc/pushlane/pushlane.yaml config",
			"PUSHLANE_KAFKA__BROKERS=a:9092,b:9092 pushctl config | grep kafka.brokers",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				var lines []string
				flatten(reflect.ValueOf(cfg.Redacted()), "", &lines)
				sort.Strings(lines)
				_, err = fmt.Fprintln(c.stdout, strings.Join(lines, "\n"))
				return err
			}
		},
	}
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
	case v.Type() == reflect.TypeOf(time.Duration(0)):
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
