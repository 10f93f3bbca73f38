package testenv

import (
	"context"
	"log/slog"
	"sync/atomic"
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
