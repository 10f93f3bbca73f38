// Command dispatcher sends the ready batches through APNs and FCM
// (pipeline/dispatcher) and, by default, also runs the delay ladder's
// forwarder (pipeline/delay), so one binary is a complete deployment.
//
//	dispatcher -config FILE [-migrate] [-mode all|dispatch|delay] [-instance NAME] [-halt-probe 30s]
//
// -mode all (default) runs both; -mode dispatch only the dispatcher (for a
// deployment that scales the forwarder separately), -mode delay only the
// forwarder (no MySQL and no apps needed). Both share the process's
// control view, metrics and ops endpoint. SIGTERM finishes the chunks in
// flight, commits and exits.
//
// -instance makes the process a static group member (for both groups):
// a restart, even after kill -9, takes its partitions back at once, but a
// member that stops and does not come back keeps them until the session
// timeout (45 s) expires. Without it, a stopping member leaves the group
// and its partitions move at once.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pushlane/pushlane/internal/service"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/providers"
)

func main() { service.Main("dispatcher", run) }

func run(parent context.Context, args []string, stdout, stderr io.Writer) error {
	fs := service.NewFlags("dispatcher", "apply the MySQL migrations before consuming", stderr)
	mode := fs.String("mode", "all", "what to run: all (dispatcher and delay forwarder), dispatch, or delay")
	instance := fs.String("instance", "", "static group member `name` (stable per replica; rolling restarts then move no partitions)")
	haltProbe := fs.Duration("halt-probe", 30*time.Second, "while an app's credentials are refused, probe them with one real send this often")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runDispatch, runDelay := *mode == "all" || *mode == "dispatch", *mode == "all" || *mode == "delay"
	if !runDispatch && !runDelay {
		return fmt.Errorf("-mode: must be all, dispatch or delay, not %q", *mode)
	}
	if *haltProbe <= 0 {
		return errors.New("-halt-probe: must be positive")
	}
	cfg, err := fs.LoadConfig()
	if err != nil {
		return err
	}
	if runDispatch {
		if err := cfg.Require("mysql.dsn", "apps"); err != nil {
			return err
		}
	}
	if fs.CheckConfig {
		if runDispatch {
			// The senders read and parse the credentials (the .p8 key,
			// the .p12 and its password, the service account) and the
			// endpoints when they are built, not at load: built here and
			// closed, without a connection, so a check passes only what
			// the start would.
			halt, err := providers.NewHalt(nil, nil)
			if err != nil {
				return err
			}
			_, closeApps, err := dispatcher.BuildApps(cfg.Apps, halt, nil, nil)
			if err != nil {
				return err
			}
			if err := closeApps(); err != nil {
				return err
			}
		}
		return service.PrintConfig(stdout, cfg)
	}

	ctx, proc, err := service.Start(parent, cfg, stderr, "dispatcher", "control")
	if err != nil {
		return err
	}
	defer proc.Close()
	log, reg := proc.Log, proc.Metrics

	view, err := control.New(control.Config{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name},
		control.Deps{Logger: log, Metrics: reg})
	if err != nil {
		return err
	}
	var stages []func(context.Context) error
	if runDelay {
		fcfg := delay.ConfigFrom(cfg)
		fcfg.InstanceID = *instance
		f, err := delay.New(fcfg, delay.Deps{Control: view, Logger: log, Metrics: reg, Ready: proc.Ready})
		if err != nil {
			return err
		}
		stages = append(stages, f.Run)
	}
	if runDispatch {
		db, err := dispatcher.OpenMySQL(cfg.MySQL)
		if err != nil {
			return err
		}
		defer db.Close()
		if fs.Migrate {
			if err := service.MigrateMySQL(ctx, db, log); err != nil {
				return err
			}
		}
		halt, err := providers.NewHalt(log, reg)
		if err != nil {
			return err
		}
		apps, closeApps, err := dispatcher.BuildApps(cfg.Apps, halt, log, reg)
		if err != nil {
			return err
		}
		defer closeApps()
		dcfg := dispatcher.ConfigFrom(cfg)
		dcfg.HaltProbeInterval = *haltProbe
		dcfg.InstanceID = *instance
		d, err := dispatcher.New(dcfg, dispatcher.Deps{Apps: apps, Control: view, Store: dispatcher.NewMySQLStore(db), Halt: halt, Logger: log, Metrics: reg,
			Ready: proc.Ready})
		if err != nil {
			return err
		}
		stages = append(stages, d.Run)
	}

	proc.ReadyOnceCaughtUp(ctx, view.WaitCaughtUp)
	log.Info("dispatcher running", "mode", *mode)
	err = proc.RunWithView(ctx, view.Run, stages...)
	log.Info("dispatcher exited")
	return err
}
