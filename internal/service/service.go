// Package service holds what every Pushlane command shares: the JSON slog
// logger, the ops HTTP endpoint (/healthz, /readyz, /metrics), and the
// signal handling that turns SIGTERM into context cancellation so stages
// finish in-flight work and commit before exiting. The stage commands also
// share their flags, config handling, migrations at start and the running
// of stages beside the control view (command.go), so that each main is
// the wiring of its own stage.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushlane/pushlane/internal/config"
)

// NewLogger builds the process logger from cfg, writing to w.
func NewLogger(cfg config.Log, w io.Writer, component string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("component", component)
}

// SignalContext is cancelled on SIGTERM or SIGINT. A second signal exits
// at once, for an operator who does not want to wait for the drain.
func SignalContext(parent context.Context, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case s := <-ch:
			log.Info("signal received: finishing in-flight work", "signal", s.String())
			cancel()
		case <-ctx.Done():
			signal.Stop(ch)
			return
		}
		s := <-ch
		log.Error("second signal: exiting without draining", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, cancel
}

// Readiness is a set of named checks behind /readyz; a stage marks itself
// ready once connected and assigned, and unready while draining.
type Readiness struct {
	mu     sync.Mutex
	checks map[string]error
}

// NewReadiness returns readiness with the named checks pending.
func NewReadiness(names ...string) *Readiness {
	r := &Readiness{checks: map[string]error{}}
	for _, n := range names {
		r.checks[n] = errors.New("starting")
	}
	return r
}

// Set records the state of check name: nil is ready. On a nil Readiness
// (a stage run without an ops endpoint, as in tests) it does nothing, so
// the stages call it without a check of their own.
func (r *Readiness) Set(name string, err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = err
}

// Err returns nil when every check passes, otherwise an error naming each
// failing check in name order ("kafka: starting; mysql: connection
// refused"), so /readyz says the same thing on every probe.
func (r *Readiness) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var failing []error
	for _, n := range slices.Sorted(maps.Keys(r.checks)) {
		if err := r.checks[n]; err != nil {
			failing = append(failing, fmt.Errorf("%s: %w", n, err))
		}
	}
	switch len(failing) {
	case 0:
		return nil
	case 1:
		return failing[0]
	}
	return readinessErrors(failing)
}

// readinessErrors joins failing checks on one line (errors.Join uses
// newlines, which a probe log shows badly).
type readinessErrors []error

func (e readinessErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e readinessErrors) Unwrap() []error { return e }

// NewRegistry returns a registry with the Go and process collectors, so
// every command exports memory and CPU alongside its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Ops is the running ops HTTP server.
type Ops struct {
	srv *http.Server
	ln  net.Listener
}

// Addr is where the ops server listens.
func (o *Ops) Addr() string { return o.ln.Addr().String() }

// StartOps serves /healthz (the process is alive), /readyz (every
// readiness check passes) and /metrics on addr. An empty addr disables it
// and returns nil.
func StartOps(addr string, reg *prometheus.Registry, ready *Readiness, log *slog.Logger) (*Ops, error) {
	if addr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready.Err(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr: listen %s: %w", addr, err)
	}
	o := &Ops{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() {
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops server stopped", "err", err)
		}
	}()
	log.Info("ops endpoint listening", "addr", ln.Addr().String())
	return o, nil
}

// opsShutdownTimeout bounds the ops server's graceful close: a scraper that
// stops reading must not hold a stage that has drained and committed.
const opsShutdownTimeout = 5 * time.Second

// Close stops the ops server: gracefully within ctx and opsShutdownTimeout,
// then by closing what is still open.
func (o *Ops) Close(ctx context.Context) error {
	if o == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opsShutdownTimeout)
	defer cancel()
	if err := o.srv.Shutdown(ctx); err != nil {
		return errors.Join(err, o.srv.Close())
	}
	return nil
}
