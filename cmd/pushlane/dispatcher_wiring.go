package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/providers"
)

// buildDispatcher wires pipeline/dispatcher as cmd/dispatcher does: the
// apps' senders (APNs and FCM, here pointed at the simulators), a halt
// registry, and its progress store on the shared database. The senders are
// closed when Run returns.
func buildDispatcher(cfg *config.Config, db *sql.DB, view *control.View, log *slog.Logger) (func(ctx context.Context) error, error) {
	log = log.With("component", "dispatcher")
	reg := prometheus.NewRegistry()
	halt, err := providers.NewHalt(log, reg)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	apps, closeApps, err := dispatcher.BuildApps(cfg.Apps, halt, log, reg)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	d, err := dispatcher.New(dispatcher.ConfigFrom(cfg), dispatcher.Deps{
		Apps:    apps,
		Control: view,
		Store:   dispatcher.NewMySQLStore(db),
		Halt:    halt,
		Logger:  log,
		Metrics: reg,
	})
	if err != nil {
		_ = closeApps()
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	return func(ctx context.Context) error {
		err := d.Run(ctx)
		return errors.Join(err, closeApps())
	}, nil
}
