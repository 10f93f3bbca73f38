// Command pushlane runs the whole Pushlane pipeline in one process.
//
//	go run ./cmd/pushlane demo
//
// starts, in this process, franz-go's kfake Kafka broker, an embedded
// MySQL-protocol store (go-mysql-server) with the real schema and seeded demo
// devices, the APNs and FCM simulators, and the planner, delay ladder,
// dispatcher and feedback stages; publishes a demo campaign; shows its
// progress live; and ends with the campaign summary and the tokens it
// deactivated. Nothing needs to be installed but Go.
//
//	go run ./cmd/pushlane demo -real -config deploy/demo/local.yaml
//
// runs the same stages against real services (deploy/local's Kafka, MariaDB
// and ClickHouse, or a user's cluster); the simulators still run in this
// process. Its consumer groups start at the end of their topics, past what
// an earlier run left (leftovers.go).
//
// Exit status: 0 when every live device was delivered exactly once and every
// dead token deactivated; 1 when the demo ran but something differed (each
// difference is printed); 2 when it could not run (bad flags or config,
// unreachable services, another -real demo still running on the same
// consumer groups).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops the demo and prints how far it got; the
		// default handling is back for a second one, which ends the process.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

const usage = `usage: pushlane demo [flags]

Runs the whole pipeline in this process on a demo campaign and verifies the
outcome. Flags:
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	if len(args) == 0 || args[0] != "demo" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(stdout, usage)
			newFlags(stdout, &demoOptions{}).PrintDefaults()
			return 0
		}
		fmt.Fprint(stderr, usage)
		fs := newFlags(stderr, &demoOptions{})
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return 2
	}
	o := demoOptions{Environ: environ}
	fs := newFlags(stderr, &o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pushlane demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(stderr, "pushlane demo:", err)
		return 2
	}
	res, err := runDemo(ctx, o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "pushlane demo:", err)
		return 2
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(stderr, "pushlane demo: %d check(s) failed:\n", len(res.Problems))
		for _, p := range res.Problems {
			fmt.Fprintln(stderr, "  "+p)
		}
		return 1
	}
	return 0
}

func newFlags(out io.Writer, o *demoOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("pushlane demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&o.Devices, "devices", 5000, "demo devices to seed (the embedded store slows down sharply beyond that: 10,000 take about 20 s)")
	fs.DurationVar(&o.Delayed, "delayed", 4*time.Second, "send the ja devices' part this much later, through the delay ladder; 0 sends one campaign now")
	fs.IntVar(&o.BatchSize, "batch-size", 200, "devices per batch")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up waiting for the campaigns this long after the last part is due (-delayed)")
	fs.BoolVar(&o.Real, "real", false, "run against the real services of -config instead of the embedded ones")
	fs.StringVar(&o.ConfigPath, "config", "", "with -real: the Pushlane config `file` (Kafka, MySQL, optional ClickHouse); PUSHLANE_* overrides apply")
	fs.StringVar(&o.ClickHouse, "clickhouse", "", "write analytics to ClickHouse at `addr` (native protocol) instead of a file")
	fs.StringVar(&o.Analytics, "analytics", "", "JSON-lines analytics `file` when not on ClickHouse (default <dir>/analytics.jsonl)")
	fs.StringVar(&o.Dir, "dir", "", "work `directory` for the generated credentials, config, log and analytics (default: a new temporary one)")
	fs.StringVar(&o.Progress, "progress", "auto", "progress display: auto (a bar on a terminal, else lines), bar, lines or none")
	return fs
}

func (o demoOptions) check() error {
	switch {
	case o.Devices < 1:
		return fmt.Errorf("-devices must be at least 1")
	case o.Delayed < 0:
		return fmt.Errorf("-delayed must not be negative")
	case o.BatchSize < 1:
		return fmt.Errorf("-batch-size must be at least 1")
	case o.Timeout <= 0:
		return fmt.Errorf("-timeout must be positive")
	case o.Real && o.ConfigPath == "":
		return fmt.Errorf("-real needs -config FILE (deploy/demo/local.yaml for deploy/local's stack)")
	case !o.Real && o.ConfigPath != "":
		return fmt.Errorf("-config is only used with -real")
	}
	switch o.Progress {
	case "auto", "bar", "lines", "none":
	default:
		return fmt.Errorf("-progress must be auto, bar, lines or none, not %q", o.Progress)
	}
	return nil
}
