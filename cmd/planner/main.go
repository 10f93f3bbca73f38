// Command planner consumes campaigns and plans each into batch events on
// the delay ladder, streaming the audience from MySQL. See pipeline/planner
// for the design (chunked transactions, checkpoints, waves, throttle).
package main

import (
	"context"
	"io"

	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/planner"
)

func main() { service.Main("planner", run) }

func run(parent context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.NewFlags("planner", "apply the MySQL migrations before consuming", stderr)
	instance := fs.String("instance", planner.DefaultInstance(), "replica `name`, unique and stable per replica: transactional id <group_prefix>-planner-<name> and static group member")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := fs.LoadConfig()
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
	if fs.CheckConfig {
		return service.PrintConfig(stdout, cfg)
	}

	ctx, proc, err := service.Start(parent, cfg, stderr, "planner", "planner", "control")
	if err != nil {
		return err
	}
	defer proc.Close()
	log := proc.Log

	db, err := planner.OpenMySQL(cfg.MySQL)
	if err != nil {
		return err
	}
	defer db.Close()
	if fs.Migrate {
		if err := service.MigrateMySQL(ctx, db, log); err != nil {
			return err
		}
	}
	store := planner.NewMySQLStore(db)
	defer store.Close()

	view, err := control.New(control.Config{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name},
		control.Deps{Logger: log, Metrics: proc.Metrics})
	if err != nil {
		return err
	}
	audit, err := control.NewAuditor(control.AuditorConfig{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name,
		Group: cfg.Kafka.GroupPrefix + "-control-audit", DeadLetterTopic: cfg.Kafka.Topics.DeadLetter.Name},
		control.Deps{Logger: log, Metrics: proc.Metrics})
	if err != nil {
		return err
	}
	p, err := planner.New(pcfg, planner.Deps{Store: store, Controls: view, Logger: log, Metrics: proc.Metrics, Ready: proc.Ready})
	if err != nil {
		return err
	}
	proc.ReadyOnceCaughtUp(ctx, view.WaitCaughtUp)
	log.Info("planner starting", "instance", *instance, "campaigns", cfg.Kafka.Topics.Campaigns.Name)
	err = proc.RunWithView(ctx, view.Run, p.Run, audit.Run)
	log.Info("planner stopped")
	return err
}
