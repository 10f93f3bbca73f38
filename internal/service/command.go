package service

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/migrate"
)

// Main is a stage command's main: it calls run with the process's
// arguments, standard output and standard error, and when run fails prints
// "command: error" and exits 1. -h, which the flag set has answered with
// the usage already, is not a failure.
func Main(command string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, command+":", err)
		os.Exit(1)
	}
}

// Flags are the flags every stage command takes: -config, -migrate and
// -check-config. A command defines its own on the embedded FlagSet before
// Parse.
type Flags struct {
	*flag.FlagSet
	ConfigPath  string
	Migrate     bool
	CheckConfig bool
}

// NewFlags returns command's flag set, reporting its errors to stderr;
// migrateUsage says which migrations -migrate applies.
func NewFlags(command, migrateUsage string, stderr io.Writer) *Flags {
	f := &Flags{FlagSet: flag.NewFlagSet(command, flag.ContinueOnError)}
	f.SetOutput(stderr)
	f.StringVar(&f.ConfigPath, "config", "", "YAML config `file` (defaults and PUSHLANE_* environment without it)")
	f.BoolVar(&f.Migrate, "migrate", false, migrateUsage)
	f.BoolVar(&f.CheckConfig, "check-config", false, "validate the config, print it as sorted key = value lines with secrets masked, and exit")
	return f
}

// LoadConfig loads the -config file with the process's PUSHLANE_
// environment over it.
func (f *Flags) LoadConfig() (*config.Config, error) {
	return config.Load(f.ConfigPath, os.Environ())
}

// PrintConfig writes cfg as "key = value" lines, secrets masked: what
// -check-config prints, the same as pushctl config.
func PrintConfig(w io.Writer, cfg *config.Config) error {
	_, err := fmt.Fprintln(w, strings.Join(cfg.Lines(), "\n"))
	return err
}

// Process is a started stage command: its logger, the metrics registry and
// readiness that the ops endpoint serves, and the signal handling.
type Process struct {
	Log     *slog.Logger
	Metrics *prometheus.Registry
	Ready   *Readiness

	component string
	ops       *Ops
	cancel    context.CancelFunc
}

// Start starts a stage command whose config is valid: the logger of
// component writing to stderr, the ops endpoint on cfg.HTTP.Addr with the
// named readiness checks pending, and the returned context, which SIGTERM
// or SIGINT cancels. Close releases them.
func Start(parent context.Context, cfg *config.Config, stderr io.Writer, component string, checks ...string) (context.Context, *Process, error) {
	log := NewLogger(cfg.Log, stderr, component)
	ctx, cancel := SignalContext(parent, log)
	p := &Process{Log: log, Metrics: NewRegistry(), Ready: NewReadiness(checks...), component: component, cancel: cancel}
	ops, err := StartOps(cfg.HTTP.Addr, p.Metrics, p.Ready, log)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	p.ops = ops
	return ctx, p, nil
}

// ReadyOnceCaughtUp marks check "control" ready once caughtUp returns nil
// (the control view's WaitCaughtUp): until then a stage could act on a
// campaign whose cancel it has not read yet. The check must have been
// named in Start.
func (p *Process) ReadyOnceCaughtUp(ctx context.Context, caughtUp func(context.Context) error) {
	go func() {
		if err := caughtUp(ctx); err == nil {
			p.Ready.Set("control", nil)
		}
	}()
}

// Close stops the ops endpoint and the signal handling.
func (p *Process) Close() {
	_ = p.ops.Close(context.Background())
	p.cancel()
}

// RunWithView runs stages until ctx ends or one of them fails, which stops
// the others, beside view (the campaign-control view the stages read). The
// view starts before the stages and stops only after the last has
// returned, so a cancel stays visible while they drain; a view that fails
// while they run stops them. It returns every error, the view's included.
func (p *Process) RunWithView(ctx context.Context, view func(context.Context) error, stages ...func(context.Context) error) error {
	sctx, stopStages := context.WithCancel(ctx)
	defer stopStages()
	vctx, stopView := context.WithCancel(context.WithoutCancel(ctx))
	defer stopView()
	viewDone := make(chan error, 1)
	go func() {
		err := view(vctx)
		if err != nil && vctx.Err() == nil {
			p.Log.Error("control view stopped; stopping the "+p.component, "err", err)
			stopStages()
		}
		viewDone <- err
	}()

	errs := make([]error, len(stages))
	var wg sync.WaitGroup
	for i, run := range stages {
		wg.Go(func() {
			// A lone stage's error is the command's, which main reports.
			if errs[i] = run(sctx); errs[i] != nil && len(stages) > 1 {
				p.Log.Error("stage stopped", "err", errs[i])
				stopStages()
			}
		})
	}
	wg.Wait()
	stopView()
	return errors.Join(append(errs, <-viewDone)...)
}

// migrationTimeout bounds -migrate, so a lock held elsewhere fails the
// start instead of hanging it.
const migrationTimeout = 2 * time.Minute

// MigrateMySQL applies the MySQL migrations (-migrate).
func MigrateMySQL(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, migrationTimeout)
	defer cancel()
	applied, err := migrate.MySQL(ctx, db)
	if err != nil {
		return err
	}
	log.Info("mysql migrations applied", "applied", applied)
	return nil
}

// MigrateClickHouse applies the ClickHouse migrations to database
// (-migrate).
func MigrateClickHouse(ctx context.Context, ch driver.Conn, database string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, migrationTimeout)
	defer cancel()
	applied, err := migrate.ClickHouse(ctx, ch, database)
	if err != nil {
		return err
	}
	log.Info("clickhouse migrations applied", "database", database, "applied", applied)
	return nil
}
