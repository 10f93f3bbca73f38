package simcore

import (
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Counts is a snapshot of what a simulator saw.
type Counts struct {
	Requests   int64            `json:"requests"`   // every request that reached the handler
	Accepted   int64            `json:"accepted"`   // answered as delivered
	Rejected   map[string]int64 `json:"rejected"`   // by reason or error code
	Devices    int              `json:"devices"`    // distinct tokens accepted
	Duplicates int              `json:"duplicates"` // tokens accepted more than once
	Conns      int64            `json:"connections"`
	GoAways    int64            `json:"goaways"`
}

// Recorded is the last accepted request for one token.
type Recorded struct {
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time // when the simulator accepted it: never-early checks compare it with send-at
}

// Counter counts requests and every accepted device, so tests can assert
// exact delivery and zero duplicates.
type Counter struct {
	requests atomic.Int64
	record   bool

	// mu guards the accept counts together, so a Snapshot's Accepted is
	// always the sum of the per-token counts it reports.
	mu       sync.Mutex
	accepted int64
	perToken map[string]int32
	dups     int
	rejected map[string]int64
	last     map[string]Recorded
}

// NewCounter returns an empty counter; record keeps the last accepted
// request of every token (for tests that check headers and payloads).
func NewCounter(record bool) *Counter {
	c := &Counter{record: record}
	c.Reset()
	return c
}

// Reset forgets what the counter counted: requests, accepted sends, the
// per-token counts (so devices and duplicates), rejections and recorded
// requests. It knows nothing else: connection and GOAWAY counts, faults,
// token rules and auth state are the server's and stay. A request that is
// being answered while Reset runs may be counted on either side of it.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests.Store(0)
	c.accepted = 0
	c.perToken = make(map[string]int32)
	c.dups = 0
	c.rejected = make(map[string]int64)
	c.last = make(map[string]Recorded)
}

// Request counts one request.
func (c *Counter) Request() { c.requests.Add(1) }

// Accept counts one delivery to token and returns how many it has had.
func (c *Counter) Accept(token string, r *http.Request, body []byte) int {
	var rec Recorded
	if c.record {
		// Cloned before taking the lock: the copy is the slow part.
		rec = Recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: append([]byte(nil), body...), At: time.Now()}
	}
	c.mu.Lock()
	c.accepted++
	n := c.perToken[token] + 1
	c.perToken[token] = n
	if n == 2 {
		c.dups++
	}
	if c.record {
		c.last[token] = rec
	}
	c.mu.Unlock()
	return int(n)
}

// Reject counts one refusal by reason.
func (c *Counter) Reject(reason string) {
	c.mu.Lock()
	c.rejected[reason]++
	c.mu.Unlock()
}

// Snapshot returns the totals.
func (c *Counter) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Counts{
		Requests:   c.requests.Load(),
		Accepted:   c.accepted,
		Rejected:   maps.Clone(c.rejected),
		Devices:    len(c.perToken),
		Duplicates: c.dups,
	}
}

// AcceptedFor is how many times token was accepted.
func (c *Counter) AcceptedFor(token string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.perToken[token])
}

// DuplicateTokens maps every token accepted more than once to its count.
func (c *Counter) DuplicateTokens() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int)
	for t, n := range c.perToken {
		if n > 1 {
			out[t] = int(n)
		}
	}
	return out
}

// Last returns the last accepted request for token (only when recording).
func (c *Counter) Last(token string) (Recorded, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.last[token]
	return r, ok
}
