package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/feedback"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/pipeline/planner"
)

// stage is one long-running part of the pipeline.
type stage struct {
	name string
	run  func(ctx context.Context) error
}

// pipelineDeps are what the stages share in one process.
type pipelineDeps struct {
	// DB is the one pool every stage uses (one connection on the embedded
	// store).
	DB *sql.DB
	// SmallStatements keeps feedback's statements small, for the
	// embedded store (see gmsRowsPerStatement).
	SmallStatements bool
	Sink            feedback.Sink
	Logger          *slog.Logger
}

// buildStages constructs, with the same New(cfg, deps) calls the stage
// commands make, the control view, the planner and its control auditor, the delay forwarder, the
// dispatcher and feedback. Each gets its own metrics registry: they are
// separate processes in production and may register the same names.
func buildStages(cfg *config.Config, d pipelineDeps) ([]stage, error) {
	log := d.Logger
	view, err := control.New(control.Config{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name},
		control.Deps{Logger: log.With("component", "control"), Metrics: prometheus.NewRegistry()})
	if err != nil {
		return nil, fmt.Errorf("control view: %w", err)
	}
	audit, err := control.NewAuditor(auditorConfig(cfg),
		control.Deps{Logger: log.With("component", "control-audit"), Metrics: prometheus.NewRegistry()})
	if err != nil {
		return nil, fmt.Errorf("control audit: %w", err)
	}
	pl, err := planner.New(plannerConfig(cfg), planner.Deps{
		Store:    planner.NewMySQLStore(d.DB),
		Controls: view,
		Logger:   log.With("component", "planner"),
		Metrics:  prometheus.NewRegistry(),
	})
	if err != nil {
		return nil, fmt.Errorf("planner: %w", err)
	}
	fw, err := delay.New(delayConfig(cfg), delay.Deps{Control: view, Logger: log.With("component", "delay"), Metrics: prometheus.NewRegistry()})
	if err != nil {
		return nil, fmt.Errorf("delay forwarder: %w", err)
	}
	kopts, err := pkafka.ClientOpts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	var store feedback.Store = feedback.NewMySQLStore(d.DB, cfg.Feedback.SuspectStrikes)
	if d.SmallStatements {
		store = smallStatements{inner: store, rows: gmsRowsPerStatement}
	}
	fb, err := feedback.New(feedback.ConfigFrom(cfg), feedback.Deps{
		KafkaOpts: kopts,
		Store:     store,
		Sink:      d.Sink,
		Logger:    log.With("component", "feedback"),
		Metrics:   prometheus.NewRegistry(),
	})
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	disp, err := buildDispatcher(cfg, d.DB, view, log)
	if err != nil {
		return nil, err
	}
	return []stage{
		{"control", view.Run},
		{"planner", pl.Run},
		{"control-audit", audit.Run},
		{"delay", fw.Run},
		{"dispatcher", disp},
		{"feedback", fb.Run},
	}, nil
}

// The configurations of the stages that join consumer groups, shared by
// buildStages and demoGroups (which moves those groups past an earlier
// run's leftovers).

func plannerConfig(cfg *config.Config) planner.Config {
	return planner.ConfigFrom(cfg, demoPlannerInstance)
}

func delayConfig(cfg *config.Config) delay.Config {
	c := delay.ConfigFrom(cfg)
	c.FetchMaxWait = 100 * time.Millisecond // a demo of seconds: move promptly once due
	return c
}

func auditorConfig(cfg *config.Config) control.AuditorConfig {
	return control.AuditorConfig{Kafka: cfg.Kafka, Topic: cfg.Kafka.Topics.Control.Name,
		Group: cfg.Kafka.GroupPrefix + "-control-audit", DeadLetterTopic: cfg.Kafka.Topics.DeadLetter.Name}
}

// running is a set of started stages.
type running struct {
	cancel     context.CancelFunc // the stages'
	cancelView context.CancelFunc // the control view's, after the stages
	wg         sync.WaitGroup
	viewWG     sync.WaitGroup
	mu         sync.Mutex
	errs       []error
	failed     chan struct{} // closed when a stage stops on its own
	once       sync.Once
}

// start runs every stage in its own goroutine until stop. The one named
// "control", the campaign-control view, runs until the others have
// returned, as service.RunWithView runs it in the stage binaries: a
// dispatcher draining after a stop still waits for a fresh view, and a
// cancel must stay visible to its last chunk.
func start(ctx context.Context, stages []stage) *running {
	stageCtx, cancel := context.WithCancel(ctx)
	viewCtx, cancelView := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{cancel: cancel, cancelView: cancelView, failed: make(chan struct{})}
	for _, s := range stages {
		ctx, wg := stageCtx, &r.wg
		if s.name == "control" {
			ctx, wg = viewCtx, &r.viewWG
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.run(ctx)
			if ctx.Err() == nil {
				// A stage must run until cancelled; returning early is a
				// failure even without an error.
				if err == nil {
					err = errors.New("stopped by itself")
				}
				r.mu.Lock()
				r.errs = append(r.errs, fmt.Errorf("%s: %w", s.name, err))
				r.mu.Unlock()
				r.once.Do(func() { close(r.failed) })
			} else if err != nil && !errors.Is(err, context.Canceled) {
				r.mu.Lock()
				r.errs = append(r.errs, fmt.Errorf("%s: %w", s.name, err))
				r.mu.Unlock()
			}
		}()
	}
	return r
}

// stop cancels the stages and waits up to grace for them to drain and
// commit, then stops the control view, which has a grace of its own: it
// stops within milliseconds, and stages that used all of theirs left it
// none, reporting it as still draining too.
func (r *running) stop(grace time.Duration) error {
	r.cancel()
	wait := func(wg *sync.WaitGroup, what string, grace time.Duration) {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Errorf("%s still draining after %s", what, grace))
			r.mu.Unlock()
		}
	}
	wait(&r.wg, "stages", grace)
	r.cancelView()
	wait(&r.viewWG, "control view", min(grace, 5*time.Second))
	return r.err()
}

func (r *running) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}
