// Command feedback consumes result events and device registrations and
// keeps the MySQL device table clean (dead tokens, suspect strikes,
// re-registrations) while writing one analytics row per result to
// ClickHouse. See pipeline/feedback for the rules.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/feedback"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "feedback:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("feedback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config `file` (defaults and PUSHLANE_* environment without it)")
	doMigrate := fs.Bool("migrate", false, "apply the MySQL and ClickHouse migrations before consuming")
	checkConfig := fs.Bool("check-config", false, "validate the config, print it redacted as JSON, and exit")
	rowsFile := fs.String("rows-file", "", "append analytics rows as JSON lines to `file` (instead of ClickHouse when clickhouse.addr is empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
	if err := cfg.Require("mysql.dsn"); err != nil {
		return err
	}
	if len(cfg.ClickHouse.Addr) == 0 && *rowsFile == "" {
		return errors.New("config: clickhouse.addr: required (or pass -rows-file)")
	}
	if *checkConfig {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg.Redacted())
	}

	log := service.NewLogger(cfg.Log, stderr, feedback.Stage)
	ctx, cancel := service.SignalContext(context.Background(), log)
	defer cancel()
	reg := service.NewRegistry()
	ready := service.NewReadiness(feedback.Stage)
	ops, err := service.StartOps(cfg.HTTP.Addr, reg, ready, log)
	if err != nil {
		return err
	}
	defer ops.Close(context.Background())

	db, err := feedback.OpenMySQL(cfg.MySQL)
	if err != nil {
		return err
	}
	defer db.Close()
	var sinks feedback.MultiSink
	var ch driver.Conn
	if len(cfg.ClickHouse.Addr) > 0 {
		if ch, err = feedback.OpenClickHouse(cfg.ClickHouse); err != nil {
			return err
		}
		defer ch.Close()
		sink, err := feedback.NewClickHouseSink(ch, cfg.ClickHouse.Database)
		if err != nil {
			return err
		}
		sinks = append(sinks, sink)
	}
	if *rowsFile != "" {
		fsink, err := feedback.NewFileSink(*rowsFile)
		if err != nil {
			return err
		}
		defer fsink.Close()
		sinks = append(sinks, fsink)
	}
	if *doMigrate {
		if err := applyMigrations(ctx, db, ch, cfg.ClickHouse.Database, log); err != nil {
			return err
		}
	}

	kopts, err := pkafka.ClientOpts(cfg.Kafka)
	if err != nil {
		return err
	}
	stage, err := feedback.New(feedback.ConfigFrom(cfg), feedback.Deps{
		KafkaOpts: kopts,
		Store:     feedback.NewMySQLStore(db, cfg.Feedback.SuspectStrikes),
		Sink:      sinks,
		Logger:    log,
		Metrics:   reg,
		Ready:     ready,
	})
	if err != nil {
		return err
	}
	return stage.Run(ctx)
}

func applyMigrations(ctx context.Context, db *sql.DB, ch driver.Conn, database string, log interface {
	Info(string, ...any)
}) error {
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	applied, err := migrate.MySQL(mctx, db)
	if err != nil {
		return err
	}
	log.Info("mysql migrations applied", "applied", applied)
	if ch != nil {
		applied, err := migrate.ClickHouse(mctx, ch, database)
		if err != nil {
			return err
		}
		log.Info("clickhouse migrations applied", "database", database, "applied", applied)
	}
	return nil
}
