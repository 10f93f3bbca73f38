package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/pushlane/pushlane/schemas"
)

func validateCommand() *command {
	return &command{
		name:    "validate",
		args:    "<kind> <file>... ",
		summary: "Check event files against their schema, offline",
		details: fmt.Sprintf(`
Validates each file ("-" for stdin) as an event of kind, with the same rules the
stages apply when they decode (schemas.Decode*). Needs no configuration, broker or
database. Prints "<file>: ok" or the problems; exits 3 if any file is invalid.

Kinds: %s.
Examples of each are in schemas/examples/.`, strings.Join(schemas.Kinds, ", ")),
		examples: []string{
			"pushctl validate campaign spring-sale.json",
			"pushctl validate campaign schemas/examples/campaign/*.json",
			"pushctl dlq show 1:7 -raw | pushctl validate batch -",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				if len(args) < 2 {
					return usagef("want a kind and at least one file")
				}
				kind, files := args[0], args[1:]
				if !validKind(kind) {
					return usagef("unknown kind %q: want one of %s", kind, strings.Join(schemas.Kinds, ", "))
				}
				bad := 0
				for _, f := range files {
					data, err := c.readFile(f)
					if err != nil {
						return err
					}
					if _, err := schemas.Decode(kind, data); err != nil {
						bad++
						fmt.Fprintf(c.stdout, "%s: %v\n", f, err)
						continue
					}
					fmt.Fprintf(c.stdout, "%s: ok\n", f)
				}
				if bad > 0 {
					return invalid(fmt.Errorf("%d of %d files invalid", bad, len(files)))
				}
				return nil
			}
		},
	}
}
