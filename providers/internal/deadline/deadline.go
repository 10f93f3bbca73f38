// Package deadline gives the senders' requests their timeout without a
// context.WithTimeout per request.
package deadline

import (
	"context"
	"sync/atomic"
	"time"
)

// Shared gives sends their RequestTimeout. A context.WithTimeout per send
// (a timer armed and stopped, a registration with the caller's context, five
// allocations) cost about a microsecond, several per cent of a send, so the
// sends of one caller context that start within the same sixteenth of
// RequestTimeout share one context: each send's timeout is then between
// RequestTimeout and 17/16 of it. At most one shared context is made per
// slot; a send from another caller context in that slot gets its own.
type Shared struct {
	timeout, slot time.Duration
	cur           atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	parent context.Context
	ctx    context.Context
	until  time.Time // sends starting before this may use ctx
	// cancel is never called early: sends in flight use ctx, and its
	// deadline releases it. Kept so the context is not thought leaked.
	cancel context.CancelFunc
}

// New returns a Shared for timeout; 0 or less means none.
func New(timeout time.Duration) *Shared {
	return &Shared{timeout: timeout, slot: timeout / 16}
}

// Context returns the context for a send starting now with the caller's
// ctx, and the function to call when it ends.
func (ds *Shared) Context(ctx context.Context, now time.Time) (context.Context, context.CancelFunc) {
	if ds.timeout <= 0 {
		return ctx, noCancel
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) <= ds.timeout {
		return ctx, noCancel
	}
	sd := ds.cur.Load()
	if sd != nil && now.Before(sd.until) {
		if sameContext(sd.parent, ctx) {
			return sd.ctx, noCancel
		}
		return context.WithTimeout(ctx, ds.timeout)
	}
	sctx, cancel := context.WithDeadline(ctx, now.Add(ds.slot+ds.timeout))
	next := &sharedDeadline{parent: ctx, ctx: sctx, until: now.Add(ds.slot), cancel: cancel}
	ds.cur.CompareAndSwap(sd, next) // losing the race leaves this one to this send alone
	return sctx, noCancel
}

// Max is the longest a send's context from Context lasts: the timeout,
// plus the slot during which a shared deadline is handed out. 0 without a
// timeout.
func (ds *Shared) Max() time.Duration {
	if ds.timeout <= 0 {
		return 0
	}
	return ds.timeout + ds.slot
}

func noCancel() {}

// sameContext is ctx == other, false where == would panic (a context whose
// dynamic type is not comparable).
func sameContext(ctx, other context.Context) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return ctx == other
}
