package testenv

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// CountingLogger returns a logger that keeps nothing but the number of
// records whose message is msg: for tests that a stage logs something, and
// how often (a retry loop that backs off, say).
func CountingLogger(msg string) (*slog.Logger, *atomic.Int64) {
	n := new(atomic.Int64)
	return slog.New(countingHandler{msg: msg, n: n}), n
}

type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// CountAfterFirst waits up to firstWithin for n to count its first record
// (failing the test if it does not) and returns how many more it counts
// in the window that follows: how often a retry loop logs once it fails.
func CountAfterFirst(t testing.TB, n *atomic.Int64, firstWithin, window time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(firstWithin)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	first := n.Load()
	if first == 0 {
		t.Fatalf("nothing logged within %s", firstWithin)
	}
	time.Sleep(window)
	return n.Load() - first
}
