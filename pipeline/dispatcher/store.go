package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Bitmap is a set of device indexes of one batch (at most
// schemas.MaxBatchDevices, so a few hundred bytes; the store's column
// holds 10,000).
type Bitmap []byte

// Has reports whether i is in the set.
func (b Bitmap) Has(i int) bool {
	return i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0
}

// Set adds i, growing b as needed, and returns b.
func (b Bitmap) Set(i int) Bitmap {
	for len(b) <= i/8 {
		b = append(b, 0)
	}
	b[i/8] |= 1 << (i % 8)
	return b
}

// Count is the number of indexes in the set.
func (b Bitmap) Count() int {
	n := 0
	for _, x := range b {
		for ; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

// Clone returns a copy of b.
func (b Bitmap) Clone() Bitmap { return append(Bitmap(nil), b...) }

// Progress is what has happened to one batch id: which devices have their
// result for this attempt (Done), which of those wait for a retry (Retry),
// the longest Retry-After a provider asked for them, and whether the batch
// is finished (its retry batch, if any, written). It is saved after every
// chunk, once the chunk's results are acknowledged, so after a crash only
// the devices of the chunk in flight are sent again.
type Progress struct {
	Done       Bitmap
	Retry      Bitmap
	RetryAfter time.Duration
	Finished   bool
}

// Park reasons.
const (
	ParkPaused = "paused" // the campaign is paused
	ParkHalted = "halted" // the app's credentials were refused
)

// Parked is a batch set aside without being sent or dropped, with the
// record it came in, to be written back to the ready topic when its reason
// clears.
type Parked struct {
	BatchID    string
	App        string
	CampaignID string
	Reason     string // ParkPaused or ParkHalted
	SendAt     time.Time
	ExpiresAt  time.Time // zero: never
	Key        []byte
	Value      []byte
	Headers    map[string]string
	ParkedAt   time.Time // millisecond precision; identifies this parking
}

// Halt says an app's credentials were refused, cluster-wide: every
// dispatcher parks the app's batches until a probe send succeeds.
type Halt struct {
	App      string
	Provider string
	Reason   string
	Since    time.Time
	ProbeAt  time.Time // the next probe may start at this time
}

// Store keeps what must survive kill -9 and be shared by every dispatcher
// instance: per-batch progress, parked batches and halted apps. MySQLStore
// is the production one; MemStore is its in-memory twin for tests.
type Store interface {
	// Progress returns the progress of batchID (zero if unknown).
	Progress(ctx context.Context, batchID string) (Progress, error)
	// SaveProgress replaces the progress of batchID.
	SaveProgress(ctx context.Context, batchID string, p Progress) error
	// Finish marks batchID finished: a later copy is skipped.
	Finish(ctx context.Context, batchID string, at time.Time) error

	// Park stores p (replacing a parked copy of the same batch).
	Park(ctx context.Context, p Parked) error
	// ListParked returns up to limit parked batches, oldest first (by
	// ParkedAt, then BatchID), after the one parked at afterAt with id
	// afterID (a zero afterAt starts at the oldest), without Key, Value
	// and Headers.
	ListParked(ctx context.Context, afterAt time.Time, afterID string, limit int) ([]Parked, error)
	// LoadParked returns a parked batch with its record, or false.
	LoadParked(ctx context.Context, batchID string) (Parked, bool, error)
	// Unpark removes a parked batch after it was written back, unless it
	// was parked again since (parkedAt differs): a released batch can be
	// read and parked again before its release is recorded.
	Unpark(ctx context.Context, batchID string, parkedAt time.Time) error

	// Halts lists the halted apps.
	Halts(ctx context.Context) ([]Halt, error)
	// SetHalt records h unless the app is already halted.
	SetHalt(ctx context.Context, h Halt) error
	// ClaimProbe lets one dispatcher probe app: it moves ProbeAt to next
	// if it is at or before now, and reports whether it did.
	ClaimProbe(ctx context.Context, app string, now, next time.Time) (bool, error)
	// ClearHalt removes app's halt.
	ClearHalt(ctx context.Context, app string) error

	// DeleteFinishedBefore forgets progress of batches finished before t
	// and returns how many were deleted.
	DeleteFinishedBefore(ctx context.Context, t time.Time) (int64, error)
}

// errNoRecordKey is MemStore's refusal of a parked batch without a key,
// as MySQL words it.
var errNoRecordKey = errors.New("column 'record_key' cannot be null (error 1048)")

// MemStore is a Store in memory: for tests and single-process demos (it
// does not survive a restart).
type MemStore struct {
	mu       sync.Mutex
	progress map[string]Progress
	finished map[string]time.Time
	parked   map[string]Parked
	halts    map[string]Halt
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{progress: map[string]Progress{}, finished: map[string]time.Time{}, parked: map[string]Parked{}, halts: map[string]Halt{}}
}

// Progress implements Store.
func (m *MemStore) Progress(_ context.Context, id string) (Progress, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.progress[id]
	p.Done, p.Retry = p.Done.Clone(), p.Retry.Clone()
	return p, nil
}

// SaveProgress implements Store.
func (m *MemStore) SaveProgress(_ context.Context, id string, p Progress) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.Done, p.Retry = p.Done.Clone(), p.Retry.Clone()
	p.Finished = m.progress[id].Finished || p.Finished
	m.progress[id] = p
	return nil
}

// Finish implements Store.
func (m *MemStore) Finish(_ context.Context, id string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.progress[id]
	p.Finished = true
	m.progress[id] = p
	m.finished[id] = at
	return nil
}

// Park implements Store. Like MySQLStore, whose record_key column is NOT
// NULL, it refuses a batch without a record key, so a test parks only what
// production can.
func (m *MemStore) Park(_ context.Context, p Parked) error {
	if p.Key == nil {
		return fmt.Errorf("dispatcher: park %s: %w", p.BatchID, errNoRecordKey)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parked[p.BatchID] = p
	return nil
}

// ListParked implements Store.
func (m *MemStore) ListParked(_ context.Context, afterAt time.Time, afterID string, limit int) ([]Parked, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Parked, 0, len(m.parked))
	for _, p := range m.parked {
		if !afterAt.IsZero() && (p.ParkedAt.Before(afterAt) || p.ParkedAt.Equal(afterAt) && p.BatchID <= afterID) {
			continue
		}
		p.Key, p.Value, p.Headers = nil, nil, nil
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ParkedAt.Equal(out[j].ParkedAt) {
			return out[i].ParkedAt.Before(out[j].ParkedAt)
		}
		return out[i].BatchID < out[j].BatchID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// LoadParked implements Store.
func (m *MemStore) LoadParked(_ context.Context, id string) (Parked, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.parked[id]
	return p, ok, nil
}

// Unpark implements Store.
func (m *MemStore) Unpark(_ context.Context, id string, parkedAt time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.parked[id]; ok && p.ParkedAt.Equal(parkedAt) {
		delete(m.parked, id)
	}
	return nil
}

// Halts implements Store.
func (m *MemStore) Halts(context.Context) ([]Halt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Halt, 0, len(m.halts))
	for _, h := range m.halts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out, nil
}

// SetHalt implements Store.
func (m *MemStore) SetHalt(_ context.Context, h Halt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.halts[h.App]; !ok {
		m.halts[h.App] = h
	}
	return nil
}

// ClaimProbe implements Store.
func (m *MemStore) ClaimProbe(_ context.Context, app string, now, next time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.halts[app]
	if !ok || h.ProbeAt.After(now) {
		return false, nil
	}
	h.ProbeAt = next
	m.halts[app] = h
	return true, nil
}

// ClearHalt implements Store.
func (m *MemStore) ClearHalt(_ context.Context, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.halts, app)
	return nil
}

// DeleteFinishedBefore implements Store.
func (m *MemStore) DeleteFinishedBefore(_ context.Context, t time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, at := range m.finished {
		if at.Before(t) {
			delete(m.finished, id)
			delete(m.progress, id)
			n++
		}
	}
	return n, nil
}
