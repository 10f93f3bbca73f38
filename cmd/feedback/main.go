// Command feedback consumes result events and device registrations and
// keeps the MySQL device table clean (dead tokens, suspect strikes,
// re-registrations) while writing one analytics row per result to
// ClickHouse. See pipeline/feedback for the rules.
package main

import (
	"context"
	"errors"
	"io"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/feedback"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

func main() { service.Main("feedback", run) }

func run(parent context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.NewFlags("feedback", "apply the MySQL and ClickHouse migrations before consuming", stderr)
	rowsFile := fs.String("rows-file", "", "append analytics rows as JSON lines to `file` (instead of ClickHouse when clickhouse.addr is empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := fs.LoadConfig()
	if err != nil {
		return err
	}
	if err := cfg.Require("mysql.dsn"); err != nil {
		return err
	}
	if len(cfg.ClickHouse.Addr) == 0 && *rowsFile == "" {
		return errors.New("config: clickhouse.addr: required (or pass -rows-file)")
	}
	if fs.CheckConfig {
		return service.PrintConfig(stdout, cfg)
	}

	ctx, proc, err := service.Start(parent, cfg, stderr, feedback.Stage, feedback.Stage)
	if err != nil {
		return err
	}
	defer proc.Close()

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
	if fs.Migrate {
		if err := service.MigrateMySQL(ctx, db, proc.Log); err != nil {
			return err
		}
		if ch != nil {
			if err := service.MigrateClickHouse(ctx, ch, cfg.ClickHouse.Database, proc.Log); err != nil {
				return err
			}
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
		Logger:    proc.Log,
		Metrics:   proc.Metrics,
		Ready:     proc.Ready,
	})
	if err != nil {
		return err
	}
	return stage.Run(ctx)
}
