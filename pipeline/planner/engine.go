package planner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pushlane/pushlane/internal/flatjson"
	"github.com/pushlane/pushlane/schemas"
)

// engine turns a campaign's audience, fed in Position order, into batches.
// It is pure: no Kafka, no MySQL, no clock. One engine plans one attempt
// of one campaign; its state at a chunk boundary is the checkpoint.
type engine struct {
	c         *schemas.Campaign
	sched     schedule
	batchSize int
	maxBytes  int
	viaAPNs   bool

	// prefix holds the fields every batch of the campaign shares, from
	// "campaign_id" to the opening of "devices"; encoded once.
	prefix []byte

	single *wave             // mode "at"
	waves  map[waveKey]*wave // mode "local_time"
	zones  map[string]*wave  // device timezone → wave, a cache
	// lanes by start instant (unix ns): the throttle is the campaign's,
	// so waves due at the same instant (every wave whose local time had
	// passed is due at the planning start) share one spacing instead of
	// each sending R per second from that instant.
	lanes map[int64]*lane

	// pos is the last device fed; scanned is the last device a committed
	// chunk had seen, so invalid tokens and expired devices up to it were
	// already reported.
	pos     Position
	scanned Position
	totals  totals

	scratch []byte

	emit    func(*outBatch) error
	invalid func(d *Device, reason string) error
	// alloc returns an empty buffer of at least n bytes for a batch value;
	// the planner recycles values once Kafka has them.
	alloc func(n int) []byte
}

// totals count a campaign across its chunks and attempts.
type totals struct {
	Devices int64 // devices in emitted batches
	Batches int64
	Invalid int64 // devices not batched: token malformed for its platform
	// Expired: devices not batched because they would be sent at or
	// after expires_at: their wave starts then, or their batch's throttled
	// send-at would be then (see laneLapsed). Counts only: no result.
	Expired int64
	// FirstSendAt and LastSendAt bound the emitted batches' send-ats, in
	// unix milliseconds; 0 = none yet.
	FirstSendAt int64
	LastSendAt  int64
}

// lane is the throttle schedule of the waves that start at one instant.
type lane struct {
	// sent counts the devices in the emitted batches of all the lane's
	// waves; the next batch is due sent/R after the start. It is not
	// checkpointed: it is the sum of its waves' sent. So is whether the
	// lane has lapsed (schedule.laneLapsed): a resumed attempt skips
	// exactly the batches the interrupted one would have.
	sent int64
}

// wave is one group of devices due together, with its open batch.
type wave struct {
	key     waveKey
	name    string // Batch.Wave: "" for mode "at"
	idPart  string // in batch ids: "all" for mode "at"
	start   time.Time
	expired bool
	lane    *lane

	seq  int      // next batch's sequence number
	sent int64    // devices in the wave's emitted batches: its share of the lane's
	done Position // last device of the wave's last emitted batch

	buf   []byte // the open batch's devices, encoded, comma-separated
	n     int
	first Position // first device in buf
	last  Position // last device in buf
}

// outBatch is an encoded batch ready to produce.
type outBatch struct {
	ID        string
	Wave      string
	Seq       int
	SendAt    time.Time
	ExpiresAt time.Time
	Devices   int
	Value     []byte
}

// maxZoneCache bounds the timezone cache: device timezones are free text,
// and garbage values must not grow the planner's memory with the audience.
const maxZoneCache = 4096

// batchHeadroom is room for a batch's own fields (id, wave, times) next to
// the shared prefix when checking the byte limit.
const batchHeadroom = 512

func newEngine(c *schemas.Campaign, sched schedule, maxBytes int, viaAPNs bool) (*engine, error) {
	e := &engine{
		c:         c,
		sched:     sched,
		batchSize: c.Options.BatchSizeOrDefault(),
		maxBytes:  maxBytes,
		viaAPNs:   viaAPNs,
		waves:     map[waveKey]*wave{},
		zones:     map[string]*wave{},
		lanes:     map[int64]*lane{},
		alloc:     func(n int) []byte { return make([]byte, 0, n) },
	}
	content, err := json.Marshal(c.Content)
	if err != nil {
		return nil, fmt.Errorf("encode content: %w", err)
	}
	options, err := json.Marshal(c.Options)
	if err != nil {
		return nil, fmt.Errorf("encode options: %w", err)
	}
	p := append([]byte(nil), `"campaign_id":`...)
	p = flatjson.AppendString(p, c.ID)
	p = append(p, `,"campaign_version":`...)
	p = strconv.AppendInt(p, int64(c.Version), 10)
	p = append(p, `,"app":`...)
	p = flatjson.AppendString(p, c.App)
	p = append(p, `,"attempt":1,"content":`...)
	p = append(p, content...)
	p = append(p, `,"options":`...)
	p = append(p, options...)
	p = append(p, `,"devices":[`...)
	e.prefix = p
	if len(e.prefix)+batchHeadroom >= maxBytes {
		return nil, fmt.Errorf("content and options take %d bytes, more than a batch may hold (%d)", len(e.prefix), maxBytes)
	}
	if sched.mode != schemas.DeliverLocalTime {
		e.single = e.wave(waveKey{})
	}
	return e, nil
}

func (e *engine) wave(k waveKey) *wave {
	if w, ok := e.waves[k]; ok {
		return w
	}
	w := &wave{key: k, name: e.sched.waveName(k), start: e.sched.waveStart(k), expired: e.sched.waveExpired(k)}
	l, ok := e.lanes[w.start.UnixNano()]
	if !ok {
		l = &lane{}
		e.lanes[w.start.UnixNano()] = l
	}
	w.lane = l
	w.idPart = w.name
	if w.idPart == "" {
		w.idPart = "all"
	}
	e.waves[k] = w
	return w
}

func (e *engine) waveOf(tz []byte) *wave {
	if e.single != nil {
		return e.single
	}
	if w, ok := e.zones[string(tz)]; ok {
		return w
	}
	loc, _ := schemas.LoadZone(string(tz))
	w := e.wave(e.sched.waveFor(loc))
	if len(e.zones) < maxZoneCache {
		e.zones[string(tz)] = w
	}
	return w
}

// add feeds the next device of the audience.
func (e *engine) add(d *Device) error {
	pos := d.pos()
	fresh := e.scanned.Less(pos)
	e.pos = pos
	if reason := tokenProblem(d.Token, d.Platform, e.viaAPNs); reason != "" {
		if !fresh {
			return nil
		}
		e.totals.Invalid++
		return e.invalid(d, reason)
	}
	w := e.waveOf(d.Timezone)
	if w.expired || e.sched.laneLapsed(w.start, w.lane.sent) {
		// Counted once: a device a committed chunk had seen was counted
		// then, or was in a batch (emitted, or dropped by lapse).
		if fresh {
			e.totals.Expired++
		}
		return nil
	}
	if !w.done.Less(pos) {
		return nil // in a batch a committed chunk already emitted
	}
	e.scratch = appendDevice(e.scratch[:0], d)
	if w.n > 0 && len(e.prefix)+batchHeadroom+len(w.buf)+1+len(e.scratch) > e.maxBytes {
		// Big devices (long tokens, long user ids) with a big batch
		// size would make a record the broker refuses: close the batch
		// early. Deterministic, since it depends only on the devices.
		if err := e.emitWave(w); err != nil {
			return err
		}
		if e.sched.laneLapsed(w.start, w.lane.sent) {
			// This device would open the batch due at or after
			// expires_at. A resumed attempt sees the same: cuts happen
			// only past the checkpoint's scanned position, so the
			// device is fresh both times.
			if fresh {
				e.totals.Expired++
			}
			return nil
		}
	}
	if w.n == 0 {
		w.first = pos
	} else {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, e.scratch...)
	w.n++
	w.last = pos
	if w.n >= e.batchSize {
		return e.emitWave(w)
	}
	return nil
}

// flush emits every open batch: the audience is exhausted.
func (e *engine) flush() error {
	for _, k := range e.sortedWaves() {
		if w := e.waves[k]; w.n > 0 {
			if err := e.emitWave(w); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) sortedWaves() []waveKey {
	keys := make([]waveKey, 0, len(e.waves))
	for k := range e.waves {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b waveKey) int { return int(a.offset) - int(b.offset) })
	return keys
}

// batchID is deterministic in (campaign, version, wave, seq), so a
// replayed or resumed campaign produces the same ids and downstream stages
// drop duplicates by id.
func batchID(campaign string, version int, wave string, seq int) string {
	b := make([]byte, 0, len(campaign)+len(wave)+24)
	b = append(b, campaign...)
	b = append(b, ":v"...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, ':')
	b = append(b, wave...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(seq), 10)
	return string(b)
}

func (e *engine) emitWave(w *wave) error {
	sendAt := e.sched.batchSendAt(w.start, w.lane.sent)
	expiresAt := e.sched.batchExpiresAt(sendAt)
	out := &outBatch{
		ID:        batchID(e.c.ID, e.c.Version, w.idPart, w.seq),
		Wave:      w.name,
		Seq:       w.seq,
		SendAt:    sendAt,
		ExpiresAt: expiresAt,
		Devices:   w.n,
	}
	v := e.alloc(len(e.prefix) + batchHeadroom + len(w.buf) + 2)
	v = append(v, `{"schema_version":1,"id":`...)
	v = flatjson.AppendString(v, out.ID)
	if out.Wave != "" {
		v = append(v, `,"wave":`...)
		v = flatjson.AppendString(v, out.Wave)
	}
	v = append(v, `,"seq":`...)
	v = strconv.AppendInt(v, int64(out.Seq), 10)
	v = append(v, `,"send_at":`...)
	v = appendTime(v, sendAt)
	if !expiresAt.IsZero() {
		v = append(v, `,"expires_at":`...)
		v = appendTime(v, expiresAt)
	}
	v = append(v, ',')
	v = append(v, e.prefix...)
	v = append(v, w.buf...)
	v = append(v, ']', '}')
	out.Value = v

	ms := sendAt.UnixMilli()
	if e.totals.FirstSendAt == 0 || ms < e.totals.FirstSendAt {
		e.totals.FirstSendAt = ms
	}
	if ms > e.totals.LastSendAt {
		e.totals.LastSendAt = ms
	}
	e.totals.Batches++
	e.totals.Devices += int64(w.n)
	w.seq++
	w.sent += int64(w.n)
	w.lane.sent += int64(w.n)
	w.done = w.last
	w.buf = w.buf[:0]
	w.n = 0
	if e.sched.laneLapsed(w.start, w.lane.sent) {
		e.lapse(w.lane)
	}
	return e.emit(out)
}

// lapse drops the open batches of lane l, whose next batch would be due at
// or after expires_at: emitted, each would be routed onto the delay ladder
// by its send-at and found expired only when due, hours later maybe, its
// devices counted as planned. Their devices are counted as expired, as
// the lane's later devices are when read. None of them is in any total
// yet (an open batch's devices are not, even those a resumed attempt
// reads again), and none is counted again: a resumed attempt reading them
// again finds the lane lapsed and them not fresh.
func (e *engine) lapse(l *lane) {
	for _, w := range e.waves {
		if w.lane == l && w.n > 0 {
			e.totals.Expired += int64(w.n)
			w.buf, w.n = w.buf[:0], 0
		}
	}
}

// waveState is a wave's checkpointed progress.
type waveState struct {
	Offset int32
	Seq    int
	Sent   int64
	Done   Position
}

// state captures what a resumed attempt needs: where to read again from,
// and each wave's progress. Devices in open batches are not emitted yet,
// so reading resumes before the first of them; devices up to the state's
// scanned position that a wave already emitted are skipped on the way.
func (e *engine) state() (after, scanned Position, waves []waveState, t totals) {
	after = e.pos
	for _, k := range e.sortedWaves() {
		w := e.waves[k]
		if w.n > 0 && w.first.before().Less(after) {
			after = w.first.before()
		}
		if w.seq > 0 {
			waves = append(waves, waveState{Offset: k.offset, Seq: w.seq, Sent: w.sent, Done: w.done})
		}
	}
	// A resumed attempt re-reads from its checkpoint's After: until it
	// passes the Scanned it restored, that one still stands.
	scanned = e.pos
	if scanned.Less(e.scanned) {
		scanned = e.scanned
	}
	return after, scanned, waves, e.totals
}

// restore continues from a checkpointed state: reading resumes after
// after, and devices up to scanned were already counted.
func (e *engine) restore(after, scanned Position, waves []waveState, t totals) {
	e.scanned = scanned
	// Not scanned: a checkpoint taken before the attempt reads again
	// would start after the devices of the batches open at the last one,
	// and they would never be sent.
	e.pos = after
	e.totals = t
	for _, s := range waves {
		w := e.wave(waveKey{offset: s.Offset})
		w.seq, w.sent, w.done = s.Seq, s.Sent, s.Done
		// Batches are cut in audience order, which a resumed attempt
		// reads again, so the lane goes on from the same count.
		w.lane.sent += s.Sent
	}
}
