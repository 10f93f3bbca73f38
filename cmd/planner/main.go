// Command planner consumes campaigns and plans each into batch events on
// the delay ladder, streaming the audience from MySQL. See pipeline/planner
// for the design (chunked transactions, checkpoints, waves, throttle).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/planner"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "planner:", err)
		os.Exit(1)
	}
}

func run(parent context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("planner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config `file` (defaults and PUSHLANE_* environment without it)")
	doMigrate := fs.Bool("migrate", false, "apply the MySQL migrations before consuming")
	checkConfig := fs.Bool("check-config", false, "validate the config, print it redacted as JSON, and exit")
	instance := fs.String("instance", planner.DefaultInstance(), "replica `name`, unique and stable per replica: transactional id <group_prefix>-planner-<name> and static group member")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
	if err := cfg.Require("mysql.dsn", "apps"); err != nil {
		return err
	}
	pcfg := planner.ConfigFrom(cfg, *instance)
	if err := pcfg.Validate(); err != nil {
		return err
	}
	if *checkConfig {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg.Redacted())
	}

	log := service.NewLogger(cfg.Log, stderr, "planner")
	ctx, cancel := service.SignalContext(parent, log)
	defer cancel()
	reg := service.NewRegistry()
	ready := service.NewReadiness("planner")
	ops, err := service.StartOps(cfg.HTTP.Addr, reg, ready, log)
	if err != nil {
		return err
	}
	defer ops.Close(context.Background())

	db, err := planner.OpenMySQL(cfg.MySQL)
	if err != nil {
		return err
	}
	defer db.Close()
	if *doMigrate {
		mctx, mcancel := context.WithTimeout(ctx, 2*time.Minute)
		applied, err := migrate.MySQL(mctx, db)
		mcancel()
		if err != nil {
			return err
		}
		log.Info("mysql migrations applied", "applied", applied)
	}
	store := planner.NewMySQLStore(db)
	defer store.Close()

	view, err := control.New(control.Config{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name},
		control.Deps{Logger: log, Metrics: reg})
	if err != nil {
		return err
	}
	p, err := planner.New(pcfg, planner.Deps{Store: store, Controls: view, Logger: log, Metrics: reg, Ready: ready})
	if err != nil {
		return err
	}
	log.Info("planner starting", "instance", *instance, "campaigns", cfg.Kafka.Topics.Campaigns.Name)

	// The view runs beside the planner and stops after it, so cancellations
	// stay visible while the last chunk is committed.
	vctx, stopView := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var viewErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if viewErr = view.Run(vctx); viewErr != nil && vctx.Err() == nil {
			log.Error("control view stopped; stopping the planner", "err", viewErr)
			cancel()
		}
	}()
	runErr := p.Run(ctx)
	stopView()
	wg.Wait()
	log.Info("planner stopped")
	return errors.Join(runErr, viewErr)
}
