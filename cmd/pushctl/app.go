package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Exit codes a script can rely on.
const (
	exitOK      = 0 // done
	exitFailed  = 1 // the operation failed: broker, database, refused by a safety check
	exitUsage   = 2 // the invocation is wrong: unknown command or flag, missing argument, bad configuration
	exitInvalid = 3 // an event (file, flags or dead letter) does not match its schema; nothing was sent
)

// cli is one invocation's world: its streams, environment, clock and global
// flags. Tests build one with buffers.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	now            func() time.Time

	configPath string
	brokers    string
	timeout    time.Duration
}

// exitError carries an exit code other than exitFailed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usagef reports a wrong invocation (exit 2).
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// invalid reports an event that does not match its schema (exit 3).
func invalid(err error) error { return &exitError{code: exitInvalid, err: err} }

// errHelp is returned by a command's flag parsing when help was asked for
// and printed.
var errHelp = errors.New("help printed")

type command struct {
	name     string
	args     string // the synopsis after the name
	summary  string
	details  string
	examples []string
	// flags declares the command's flags on fs and returns the function
	// that runs it with the parsed flags and the positional arguments.
	flags func(c *cli, fs *flag.FlagSet) func(ctx context.Context, args []string) error
	// unbounded: the command has no overall deadline unless -timeout is
	// given. For work whose length grows with the data and that a
	// deadline cannot stop cleanly (migrate's DDL goes on in the server
	// after the client gives up, unrecorded); the command bounds its own
	// connection attempts.
	unbounded bool
}

// defaultTimeout is -timeout's default; a variable so tests can shorten it.
var defaultTimeout = 30 * time.Second

func commands() []*command {
	return []*command{
		migrateCommand(),
		topicsCommand(),
		publishCommand(),
		controlCommand("cancel", "Cancel a campaign: nothing more of it is sent. Final: a cancelled campaign cannot be paused or resumed."),
		controlCommand("pause", "Pause a campaign: dispatchers hold its batches until it is resumed."),
		controlCommand("resume", "Resume a paused campaign."),
		dlqCommand(),
		statusCommand(),
		statsCommand(),
		replayCommand(),
		validateCommand(),
		configCommand(),
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run executes one pushctl invocation and returns its exit code.
func run(ctx context.Context, c *cli, args []string) int {
	global := flag.NewFlagSet("pushctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&c.configPath, "config", "", "configuration `file` (YAML); without it, defaults and PUSHLANE_* variables")
	global.StringVar(&c.brokers, "brokers", "", "comma-separated seed `brokers`, overriding kafka.brokers")
	global.DurationVar(&c.timeout, "timeout", defaultTimeout, "give up on a command after this `duration` (0: never; migrate and status: only when given)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(c.stdout, global)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "pushctl: %v\nRun 'pushctl help' for usage.\n", err)
		return exitUsage
	}
	rest := global.Args()
	if len(rest) == 0 {
		printUsage(c.stderr, global)
		return exitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return help(c, global, rest)
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(c.stderr, "pushctl: unknown command %q\nRun 'pushctl help' for usage.\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := cmd.flags(c, fs)
	positional, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(c.stdout, cmd, fs)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "pushctl %s: %v\nRun 'pushctl help %s' for usage.\n", name, err, name)
		return exitUsage
	}
	timeoutGiven := false
	global.Visit(func(f *flag.Flag) { timeoutGiven = timeoutGiven || f.Name == "timeout" })
	if c.timeout > 0 && (timeoutGiven || !cmd.unbounded) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	err = runFn(ctx, positional)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(c.stderr, "pushctl %s: %v\n", name, err)
	if code == exitUsage {
		fmt.Fprintf(c.stderr, "Run 'pushctl help %s' for usage.\n", name)
	}
	return code
}

// parseInterleaved parses flags anywhere among the positional arguments
// (`pushctl cancel summer-sale -reason "typo"`), which flag.Parse alone
// stops at. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func help(c *cli, global *flag.FlagSet, args []string) int {
	if len(args) == 0 {
		printUsage(c.stdout, global)
		return exitOK
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "pushctl help: unknown command %q\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.flags(c, fs)
	printCommandHelp(c.stdout, cmd, fs)
	return exitOK
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, `pushctl operates a Pushlane deployment.

Usage:
  pushctl [global flags] <command> [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(tw, "  help\t%s\n", "Show this help, or a command's: pushctl help <command>")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, global)
	fmt.Fprint(w, `
Exit codes:
  0  done
  1  the operation failed (broker, database, or refused by a safety check)
  2  usage error: unknown command or flag, missing argument, invalid configuration
  3  validation error: an event does not match its schema; nothing was sent

Errors go to stderr; results go to stdout. The configuration is the same file
and PUSHLANE_* variables the stages read (docs/config.md).
`)
}

func printCommandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: pushctl [global flags] %s %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
	if cmd.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.details))
	}
	if hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if len(cmd.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range cmd.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags is flag.PrintDefaults with one line per flag.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  -%s%s\t%s%s\n", f.Name, name, usage, def)
	})
	tw.Flush()
}

// loadConfig loads the configuration of the global flags. A bad
// configuration is a usage error: the invocation has to change.
func (c *cli) loadConfig() (*config.Config, error) {
	environ := c.environ
	if c.brokers != "" {
		// As the variable, last: the flag's list is trimmed and checked
		// (host:port, no credentials, masked if there are) like the file's.
		environ = append(slices.Clone(environ), config.EnvPrefix+"KAFKA__BROKERS="+c.brokers)
	}
	cfg, err := config.Load(c.configPath, environ)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return cfg, nil
}

// kafkaClient connects to the configured brokers. Admin reads must see
// topics created a moment ago, so the metadata cache is kept short.
func (c *cli) kafkaClient(cfg *config.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append([]kgo.Opt{
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.ClientID(cfg.Kafka.ClientID + "-pushctl"),
	}, extra...)
	cl, err := kafka.NewClient(cfg.Kafka, opts...)
	if err != nil {
		return nil, err
	}
	return cl, nil
}

// admin returns a kadm client on a new Kafka client; close the latter.
func (c *cli) admin(cfg *config.Config) (*kgo.Client, *kadm.Client, error) {
	cl, err := c.kafkaClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}
