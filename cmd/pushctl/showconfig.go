package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
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
				_, err = fmt.Fprintln(c.stdout, strings.Join(cfg.Lines(), "\n"))
				return err
			}
		},
	}
}
