package planner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/utf8cut"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// stage names the planner in dead letters.
const stage = "planner"

// handle finishes one campaign record: dead-letters it, skips it as a
// replay of a finished version, records it as cancelled or expired, or
// plans it (resuming from its checkpoint).
func (p *Planner) handle(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record) (result, error) {
	c, err := schemas.DecodeCampaign(r.Value)
	if err != nil {
		return p.deadLetter(ctx, sess, r, nil, err.Error())
	}
	var ck *checkpoint
	if cp := p.committedAt(r.Partition); cp.offset == r.Offset && cp.meta != "" {
		got, ok := decodeCheckpoint(cp.meta)
		if ok && got.Campaign == c.ID && got.Version == c.Version && got.Offset == r.Offset {
			ck = &got
		} else {
			p.log.Warn("planner: committed metadata is not this campaign's checkpoint; planning from the start",
				"campaign", c.ID, "partition", r.Partition, "offset", r.Offset)
		}
	}
	if ck != nil && ck.Final {
		// Every batch is committed; the row and the offset past the
		// record are what a crash, a MySQL error or an abort left undone.
		sched, err := newSchedule(c, ck.start())
		if err != nil {
			return p.deadLetter(ctx, sess, r, c, err.Error())
		}
		return p.finish(ctx, sess, r, c, sched, StatusPlanned, "", ck.totals(), "chunks", ck.Chunks)
	}
	if ck == nil {
		// A campaign with a checkpoint is mid-plan and resumes; one
		// without is new, or a replay, which must not plan again: the
		// dispatcher forgets finished batch ids after ProgressRetention,
		// and a grown audience makes batch seqs it never saw.
		if res, skipped, err := p.skipReplay(ctx, sess, r, c); skipped || err != nil {
			return res, err
		}
	}
	app, ok := p.cfg.Apps[c.App]
	if !ok {
		return p.deadLetter(ctx, sess, r, c, fmt.Sprintf("unknown app %q: not in the planner's apps", c.App))
	}
	start := p.now().UTC().Truncate(time.Millisecond)
	if ck != nil {
		start = ck.start()
	}
	sched, err := newSchedule(c, start)
	if err != nil {
		return p.deadLetter(ctx, sess, r, c, err.Error())
	}
	var done totals
	if ck != nil {
		done = ck.totals()
	}
	cancelled := p.cancelled(ctx, c.ID)
	if ctx.Err() != nil {
		// The stop came during a wait before the plan (the control view's
		// catch-up, the replay check). Nothing is begun, so nothing is
		// committed: the next owner decides with a caught-up view, and
		// plans a campaign without a checkpoint from its own start.
		// Planned on, the reader saw the stop and committed a checkpoint
		// of nothing whose start a resume hours later still kept: expired
		// campaigns were planned, throttled send-ats all past.
		log := p.log.With("campaign", c.ID, "version", c.Version, "partition", r.Partition, "offset", r.Offset)
		log.Info("planner: stopping before the campaign's plan began; nothing committed")
		return resultStopped, nil
	}
	if cancelled {
		return p.finish(ctx, sess, r, c, sched, StatusCancelled, "cancelled by a control event", done)
	}
	if ck == nil && sched.campaignExpired() {
		return p.finish(ctx, sess, r, c, sched, StatusExpired, expiredReason(c, sched), done)
	}
	return p.plan(ctx, sess, r, c, app, sched, ck)
}

// skipReplay commits past r, writing nothing, when MySQL records c's
// version as finished or a newer version of it: a row is written only
// once every batch it counts is committed (see plan and finish), so a
// version with one has nothing left to send. A failed version is handled again: its
// replay is dead-lettered again or, fixed meanwhile (an app added),
// planned. skipped is false when r is to be handled as usual.
func (p *Planner) skipReplay(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, c *schemas.Campaign) (res result, skipped bool, err error) {
	log := p.log.With("campaign", c.ID, "version", c.Version, "app", c.App, "partition", r.Partition, "offset", r.Offset)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	row, found, err := p.store.LatestCampaign(qctx, c.ID, c.Version)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return resultStopped, true, nil // nothing begun: the next owner polls r again
		}
		log.Error("planner: reading the campaign's row failed; retrying", "err", err)
		p.m.retries.WithLabelValues("mysql").Inc()
		// Only an abort rewinds the session to the committed offsets, so
		// that r is polled again.
		t, err := p.begin(ctx, sess, r)
		if err != nil {
			return 0, true, err
		}
		return resultRetry, true, t.abort(ctx)
	}
	reason := replayFinished
	switch {
	case !found:
		return 0, false, nil
	case row.Version > c.Version:
		reason = replaySuperseded
	case row.Status == StatusFailed:
		return 0, false, nil
	}
	t, err := p.begin(ctx, sess, r)
	if err != nil {
		return 0, true, err
	}
	ok, perr, err := t.commit(ctx, r.Offset+1, "")
	if err != nil {
		return 0, true, err
	}
	if !ok {
		return p.aborted(log, perr), true, nil
	}
	p.m.replays.WithLabelValues(reason).Inc()
	log.Warn("planner: replayed campaign record skipped; its row says it needs no plan", "reason", reason,
		"row_version", row.Version, "row_status", row.Status)
	return resultDone, true, nil
}

func expiredReason(c *schemas.Campaign, s schedule) string {
	if !s.expiresAt.IsZero() {
		// In local time the first wave can be later than the planning
		// start (09:00 at UTC+14 is still ahead): the reason names what
		// expires_at was compared with.
		if first := s.wall.Add(-maxOffset); s.mode == schemas.DeliverLocalTime && first.After(s.start) {
			return "expired before planning: expires_at " + s.expiresAt.Format(time.RFC3339) + " is not after the first possible wave, " +
				first.Format(time.RFC3339) + " (" + c.Schedule.LocalTime + " at UTC+14)"
		}
		return "expired before planning: expires_at " + s.expiresAt.Format(time.RFC3339) + " is not after " + s.start.Format(time.RFC3339)
	}
	return "expired before planning: ttl_seconds " + strconv.Itoa(c.Options.TTLSeconds) + " after the send time ran out by " + s.start.Format(time.RFC3339)
}

// cancelled consults the control view, after letting it catch up with
// control events acknowledged before now.
func (p *Planner) cancelled(ctx context.Context, id string) bool {
	if p.controls == nil {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.ControlWait)
	err := p.controls.WaitFresh(wctx, time.Now())
	cancel()
	if err != nil && ctx.Err() == nil {
		p.log.Warn("planner: control view is not caught up; deciding on what it knows", "campaign", id, "err", err)
	}
	return p.controls.Cancelled(id)
}

// txn is one Kafka transaction of the planner.
type txn struct {
	p     *Planner
	sess  *kgo.GroupTransactSession
	rec   *kgo.Record
	first *kgo.FirstErrPromise
	pctx  context.Context

	batches int
	devices int
	invalid map[string]int // by platform
	// unstored: tokens of the list left out of the audience query, on
	// the first chunk of a campaign planned from the start.
	unstored int
	// handled: devices read into this transaction, whatever became of
	// them (batched, reported invalid, expired); started: when it began,
	// or when its first page came if it waited for it untouched.
	handled int
	started time.Time
}

// full reports whether the transaction should be committed with a
// checkpoint now: BatchesPerTransaction batches, or as many devices'
// worth of work, or a quarter of the broker's transaction timeout. Invalid
// tokens and expired devices make no batch; counted by batches alone, an
// audience of millions of them was one transaction, which the broker
// aborted at its timeout, and the retry began again from the same place.
func (t *txn) full(batchSize int) bool {
	cfg := &t.p.cfg
	switch {
	case t.batches >= cfg.BatchesPerTransaction, t.handled >= cfg.BatchesPerTransaction*batchSize:
		return true
	case t.handled%256 == 0:
		return time.Since(t.started) >= cfg.TransactionTimeout/4
	}
	return false
}

// holdsRecords reports whether the transaction has produced records
// (batches, invalid-token results): from the first one the broker counts
// its timeout, and read_committed readers of those partitions wait for it.
func (t *txn) holdsRecords() bool { return t.batches > 0 || len(t.invalid) > 0 }

func (p *Planner) begin(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record) (*txn, error) {
	if err := sess.Begin(); err != nil {
		return nil, fmt.Errorf("planner: begin transaction: %w", err)
	}
	return &txn{
		p: p, sess: sess, rec: r,
		first: kgo.AbortingFirstErrPromise(sess.Client()),
		// Records are not cancelled with ctx: a stopping planner still
		// commits its current chunk.
		pctx:    context.WithoutCancel(ctx),
		invalid: map[string]int{},
		started: time.Now(),
	}, nil
}

func (t *txn) produce(r *kgo.Record) {
	t.sess.Produce(t.pctx, r, t.first.Promise())
}

// produceRecycled produces a batch record whose value returns to the
// planner's buffer pool once Kafka is done with it: a campaign then
// allocates about MaxBufferedBytes of values, not its whole size, and the
// planner's memory stays flat.
func (t *txn) produceRecycled(r *kgo.Record) {
	promise := t.first.Promise()
	t.sess.Produce(t.pctx, r, func(r *kgo.Record, err error) {
		t.p.values.put(r.Value)
		promise(r, err)
	})
}

// endCtx is for End, which must not be cancelled halfway (that would leave
// the client's transaction state undefined), but must not hang forever.
func (t *txn) endCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), t.p.cfg.TransactionTimeout+30*time.Second)
}

// abort ends the transaction without committing; the session rewinds to
// the committed offsets, so the record is polled again.
func (t *txn) abort(ctx context.Context) error {
	ectx, cancel := t.endCtx(ctx)
	defer cancel()
	if _, err := t.sess.End(ectx, kgo.TryAbort); err != nil {
		return fmt.Errorf("planner: abort transaction: %w", err)
	}
	t.p.m.chunks.WithLabelValues("aborted").Inc()
	return nil
}

// commit ends the transaction, committing the campaign partition at offset
// with meta (the checkpoint; "" once the campaign is finished). Only that
// partition is committed: records polled behind the campaign are not
// finished and must be polled again after a crash. committed is false when
// the session aborted instead (a rebalance, or a failed produce: then
// produceErr says why).
func (t *txn) commit(ctx context.Context, offset int64, meta string) (committed bool, produceErr, err error) {
	produceErr = t.first.Err() // waits for every produced record
	part, epoch, topic := t.rec.Partition, t.rec.LeaderEpoch, t.rec.Topic
	hook := func(req *kmsg.TxnOffsetCommitRequest) error {
		var keep []kmsg.TxnOffsetCommitRequestTopic
		for _, rt := range req.Topics {
			if rt.Topic != topic {
				continue
			}
			var parts []kmsg.TxnOffsetCommitRequestTopicPartition
			for _, rp := range rt.Partitions {
				if rp.Partition == part {
					rp.Offset, rp.LeaderEpoch, rp.Metadata = offset, epoch, &meta
					parts = append(parts, rp)
				}
			}
			if len(parts) > 0 {
				rt.Partitions = parts
				keep = append(keep, rt)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("planner: partition %s/%d missing from the offset commit", topic, part)
		}
		req.Topics = keep
		return nil
	}
	ectx, cancel := t.endCtx(ctx)
	defer cancel()
	committed, err = t.sess.End(kgo.PreTxnCommitFnContext(ectx, hook), kgo.TransactionEndTry(produceErr == nil))
	if err != nil {
		return false, produceErr, fmt.Errorf("planner: end transaction at %s/%d@%d: %w", topic, part, offset, err)
	}
	if !committed {
		t.p.m.chunks.WithLabelValues("aborted").Inc()
		return false, produceErr, nil
	}
	t.p.setCommitted(part, commitPoint{offset: offset, meta: meta})
	t.p.m.chunks.WithLabelValues("committed").Inc()
	t.p.m.batches.Add(float64(t.batches))
	t.p.m.devices.Add(float64(t.devices))
	for platform, n := range t.invalid {
		t.p.m.invalid.WithLabelValues(platform).Add(float64(n))
	}
	t.p.m.unstored.Add(float64(t.unstored))
	return true, nil, nil
}

// aborted turns an uncommitted end into the next step: a produce failure
// is retried after a backoff; any other abort (a rebalance, or the group
// coordinator refusing the offset commit) is re-polled at once, and with a
// backoff when it repeats.
func (p *Planner) aborted(log *slog.Logger, produceErr error) result {
	if produceErr != nil {
		log.Error("planner: producing failed; transaction aborted", "err", produceErr)
		p.m.retries.WithLabelValues("kafka").Inc()
		return resultRetry
	}
	log.Info("planner: transaction aborted by a rebalance or the group coordinator; planning the chunk again")
	p.m.retries.WithLabelValues("rebalance").Inc()
	return resultAgain
}

// deadLetter sends r to the dead-letter topic with reason and commits past
// it, in one transaction. A decodable campaign is also recorded as failed.
func (p *Planner) deadLetter(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, c *schemas.Campaign, reason string) (result, error) {
	log := p.log.With("partition", r.Partition, "offset", r.Offset)
	if c != nil {
		log = log.With("campaign", c.ID, "version", c.Version, "app", c.App)
	}
	t, err := p.begin(ctx, sess, r)
	if err != nil {
		return 0, err
	}
	now := p.now()
	dl, err := kafka.DeadLetterRecord(p.cfg.Kafka.Topics.DeadLetter.Name, stage, r, reason, now)
	if err != nil {
		_ = t.abort(ctx)
		return 0, err
	}
	t.produce(dl)
	if c != nil {
		rec := CampaignRecord{ID: c.ID, Version: c.Version, App: c.App, Status: StatusFailed, Reason: reason,
			ExpiresAt: c.Schedule.ExpiresAt, StartedAt: now, FinishedAt: now}
		if err := p.save(ctx, rec); err != nil {
			log.Error("planner: recording a failed campaign", "err", err)
			p.m.retries.WithLabelValues("mysql").Inc()
			return resultRetry, t.abort(ctx)
		}
	}
	ok, perr, err := t.commit(ctx, r.Offset+1, "")
	if err != nil {
		return 0, err
	}
	if !ok {
		return p.aborted(log, perr), nil
	}
	p.m.campaigns.WithLabelValues(outcomeDeadLettered).Inc()
	log.Warn("planner: campaign dead-lettered", "reason", reason)
	return resultDone, nil
}

func (p *Planner) save(ctx context.Context, rec CampaignRecord) error {
	if len(rec.Reason) > 1024 {
		rec.Reason = utf8cut.Prefix(rec.Reason, 1021) + "..."
	}
	// Not cut short by a stop: the status belongs to the chunk being
	// committed, and a stop must not turn a finished campaign into an
	// aborted transaction.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return p.store.SaveCampaign(sctx, rec)
}

func (p *Planner) record(c *schemas.Campaign, s schedule, status, reason string, t totals) CampaignRecord {
	ms := func(v int64) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.UnixMilli(v).UTC()
	}
	return CampaignRecord{
		ID: c.ID, Version: c.Version, App: c.App, Status: status, Reason: reason,
		Devices: t.Devices, Batches: t.Batches, InvalidTokens: t.Invalid, ExpiredDevices: t.Expired,
		FirstSendAt: ms(t.FirstSendAt), LastSendAt: ms(t.LastSendAt), ExpiresAt: s.expiresAt,
		StartedAt: s.start, FinishedAt: p.now().UTC(),
	}
}

// finish records a campaign that is planned (its last batches committed
// with a final checkpoint), or not (or no longer) planned, and commits past
// it. Its transaction holds no batch: the row is written after every batch
// it counts is committed, and before the offset leaves the record, which
// a failure here polls again. logAttrs add to the log line.
func (p *Planner) finish(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, c *schemas.Campaign, s schedule, status, reason string, done totals, logAttrs ...any) (result, error) {
	log := p.log.With("campaign", c.ID, "version", c.Version, "app", c.App, "partition", r.Partition, "offset", r.Offset)
	t, err := p.begin(ctx, sess, r)
	if err != nil {
		return 0, err
	}
	if err := p.save(ctx, p.record(c, s, status, reason, done)); err != nil {
		log.Error("planner: recording campaign status failed; retrying", "status", status, "err", err)
		p.m.retries.WithLabelValues("mysql").Inc()
		return resultRetry, t.abort(ctx)
	}
	ok, perr, err := t.commit(ctx, r.Offset+1, "")
	if err != nil {
		return 0, err
	}
	if !ok {
		return p.aborted(log, perr), nil
	}
	p.m.campaigns.WithLabelValues(status).Inc()
	if status != StatusPlanned {
		log.Warn("planner: campaign not planned", append([]any{"status", status, "reason", reason,
			"devices", done.Devices, "batches", done.Batches}, logAttrs...)...)
		return resultDone, nil
	}
	p.m.expired.Add(float64(done.Expired))
	took := p.now().Sub(s.start)
	p.m.duration.Observe(took.Seconds())
	log.Info("planner: campaign planned", append([]any{"devices", done.Devices, "batches", done.Batches,
		"invalid_tokens", done.Invalid, "expired_devices", done.Expired, "took", took}, logAttrs...)...)
	return resultDone, nil
}

// listPartSize is how many entries of an explicit token or user-id list
// one audience part queries (see Position).
const listPartSize = 500

// audienceParts cuts the campaign's audience into the queries of its
// parts. Lists are de-duplicated first: a user id in two parts would put
// its devices in the audience twice. Tokens that cannot be stored (see
// schemas.StoredToken) are left out of the queries and returned as unstored; a
// list left with none has no part at all, never the unfiltered segment.
func audienceParts(c *schemas.Campaign) (parts []AudienceQuery, unstored []string) {
	base := AudienceQuery{App: c.App, Platforms: c.Audience.Platforms, Locales: c.Audience.Locales}
	var list []string
	tokens := c.Audience.Type == schemas.AudienceTokens
	switch {
	case tokens:
		for _, tok := range dedupe(c.Audience.Tokens) {
			// Any other names no device, and MySQL 8 and MariaDB refuse
			// to compare a non-ASCII value with the ascii_bin column
			// (error 1270, illegal mix of collations): a list holding one
			// would fail its audience query on every retry.
			if schemas.StoredToken(tok) {
				list = append(list, tok)
			} else {
				unstored = append(unstored, tok)
			}
		}
	case len(c.Audience.UserIDs) > 0:
		list = dedupe(c.Audience.UserIDs)
	default:
		return []AudienceQuery{base}, nil
	}
	for i := 0; i < len(list); i += listPartSize {
		q := base
		cut := list[i:min(i+listPartSize, len(list))]
		if tokens {
			q.Tokens = cut
		} else {
			q.UserIDs = cut
		}
		parts = append(parts, q)
	}
	return parts, unstored
}

// tokenSample is what a log line shows of unstored tokens: the first few,
// each cut to a readable length.
func tokenSample(tokens []string) []string {
	const maxTokens, maxBytes = 3, 48
	var out []string
	for _, tok := range tokens[:min(len(tokens), maxTokens)] {
		if len(tok) > maxBytes {
			tok = utf8cut.Prefix(tok, maxBytes) + "..."
		}
		out = append(out, tok)
	}
	return out
}

func dedupe(in []string) []string {
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, v := range in {
		if _, ok := seen[v]; ok {
			continue
		}
		seen[v] = struct{}{}
		out = append(out, v)
	}
	return out
}

// pageMsg carries one page of the audience, the end of it, or a read
// error, from the reader goroutine.
type pageMsg struct {
	page *Page
	err  error
	done bool
}

// pagesInFlight bounds the pages between the reader and the planner loop:
// MySQL reads overlap with encoding and producing, and memory stays at a
// few pages whatever the audience size.
const pagesInFlight = 3

// readAudience streams the parts' devices after `after` into out, taking
// empty pages from free.
func (p *Planner) readAudience(ctx context.Context, parts []AudienceQuery, after Position, free <-chan *Page, out chan<- pageMsg) {
	send := func(m pageMsg) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	part, afterID := after.Part, after.ID
	if rs, ok := p.store.(segmentStore); ok && p.cfg.ReadParallelism > 1 && len(parts) == 1 && len(parts[0].UserIDs) == 0 && len(parts[0].Tokens) == 0 {
		p.readSegment(ctx, rs, parts[0], afterID, free, send)
		return
	}
	for part < len(parts) {
		pg := emptyPage(ctx, free)
		if pg == nil {
			return
		}
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		next, done, err := p.store.ReadDevices(qctx, parts[part], part, afterID, p.cfg.PageSize, pg)
		cancel()
		if err != nil {
			send(pageMsg{err: fmt.Errorf("planner: read audience part %d after id %d: %w", part, afterID, err)})
			return
		}
		afterID = next
		if done {
			part, afterID = part+1, 0
		}
		if !send(pageMsg{page: pg}) {
			return
		}
	}
	send(pageMsg{done: true})
}

// emptyPage takes a page from free and resets it, or returns nil once ctx
// ends.
func emptyPage(ctx context.Context, free <-chan *Page) *Page {
	select {
	case pg := <-free:
		pg.Reset()
		return pg
	case <-ctx.Done():
		return nil
	}
}

// segmentStore reads a segment page in two steps (MySQLStore does): the
// ids, cheap and in sequence, then the rows of their range, which can run
// for several pages at once.
type segmentStore interface {
	SegmentIDs(ctx context.Context, q AudienceQuery, afterID int64, limit int) (first, last int64, n int, err error)
	SegmentRows(ctx context.Context, q AudienceQuery, part int, first, last int64, n int, page *Page) error
}

// readSegment streams a segment with ReadParallelism row reads in flight:
// one goroutine takes the pages' id ranges in order, workers fetch their
// rows on their own connections, and the pages are passed on in order, so
// the planner sees exactly the sequence a single reader would produce.
func (p *Planner) readSegment(ctx context.Context, rs segmentStore, q AudienceQuery, afterID int64, free <-chan *Page, send func(pageMsg) bool) {
	type job struct {
		page        *Page
		first, last int64
		n           int
		err         chan error
	}
	w := p.cfg.ReadParallelism
	jobs := make(chan *job, w)
	inOrder := make(chan *job, w)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				qctx, qcancel := context.WithTimeout(ctx, time.Minute)
				j.err <- rs.SegmentRows(qctx, q, 0, j.first, j.last, j.n, j.page)
				qcancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(inOrder)
		for {
			pg := emptyPage(ctx, free)
			if pg == nil {
				return
			}
			qctx, qcancel := context.WithTimeout(ctx, time.Minute)
			first, last, n, err := rs.SegmentIDs(qctx, q, afterID, p.cfg.PageSize)
			qcancel()
			j := &job{page: pg, first: first, last: last, n: n, err: make(chan error, 1)}
			if err != nil {
				j.err <- fmt.Errorf("planner: read audience ids after %d: %w", afterID, err)
			} else if n == 0 {
				j.err <- nil
			}
			select {
			case inOrder <- j:
			case <-ctx.Done():
				return
			}
			if err != nil || n == 0 {
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
			afterID = last
			if n < p.cfg.PageSize {
				return
			}
		}
	}()
	for j := range inOrder {
		var err error
		select {
		case err = <-j.err:
		case <-ctx.Done():
			return
		}
		if err != nil {
			send(pageMsg{err: fmt.Errorf("planner: read audience ids %d..%d: %w", j.first, j.last, err)})
			return
		}
		if !send(pageMsg{page: j.page}) {
			return
		}
	}
	if ctx.Err() == nil {
		send(pageMsg{done: true})
	}
}

// plan streams the audience into batches, committing a checkpoint every
// BatchesPerTransaction batches and the campaign offset with the last
// chunk.
func (p *Planner) plan(ctx context.Context, sess *kgo.GroupTransactSession, r *kgo.Record, c *schemas.Campaign, app config.App, s schedule, ck *checkpoint) (result, error) {
	log := p.log.With("campaign", c.ID, "version", c.Version, "app", c.App, "partition", r.Partition, "offset", r.Offset)
	e, err := newEngine(c, s, p.cfg.MaxBatchBytes, app.APNS != nil)
	if err != nil {
		return p.deadLetter(ctx, sess, r, c, err.Error())
	}
	var after Position
	chunks := 0
	if ck != nil {
		e.restore(arrPos(ck.After), arrPos(ck.Scanned), ck.waveStates(), ck.totals())
		after, chunks = arrPos(ck.After), ck.Chunks
		log.Info("planner: resuming campaign from its checkpoint", "chunks", chunks, "after_part", after.Part, "after_id", after.ID,
			"devices", ck.Totals[0], "batches", ck.Totals[1])
	} else {
		log.Info("planner: planning campaign", "mode", s.mode, "batch_size", e.batchSize, "throttle_per_second", s.rate)
	}
	resumedChunks := chunks

	parts, unstored := audienceParts(c)
	t, err := p.begin(ctx, sess, r)
	if err != nil {
		return 0, err
	}
	if len(unstored) > 0 && ck == nil {
		// No invalid_token result can say it (a result names the
		// device's platform, and there is no device); the log and the
		// metric do, once per plan: a resumed plan reported them before.
		t.unstored = len(unstored)
		log.Warn("planner: tokens of the audience cannot name a stored device (not ASCII, or over 512 bytes); left out",
			"count", len(unstored), "sample", tokenSample(unstored))
	}
	ladder := delay.Ladder{Tiers: p.cfg.DelayTiers, Ready: p.cfg.Kafka.Topics.Ready.Name}
	e.alloc = p.values.get
	e.emit = func(b *outBatch) error {
		topic := ladder.Route(b.SendAt, p.now())
		t.produceRecycled(delay.BatchRecord(topic, b.ID, c.ID, b.SendAt, b.ExpiresAt, b.Value))
		t.batches++
		t.devices += b.Devices
		if p.testHook != nil {
			return p.testHook(hookEvent{campaign: c.ID, chunks: chunks, batches: t.batches, flush: t.flush})
		}
		return nil
	}
	e.invalid = func(d *Device, reason string) error {
		rec, err := p.invalidRecord(c, d, reason)
		if err != nil {
			return err
		}
		t.produce(rec)
		t.invalid[string(d.Platform)]++
		log.Debug("planner: invalid token reported", "device_id", d.ID, "platform", string(d.Platform), "reason", reason)
		return nil
	}

	readCtx, stopRead := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopRead()
		wg.Wait()
	}()
	nPages := pagesInFlight + p.cfg.ReadParallelism
	free := make(chan *Page, nPages)
	for range nPages {
		free <- &Page{}
	}
	pages := make(chan pageMsg, nPages)
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.readAudience(readCtx, parts, after, free, pages)
	}()

	// readWait and commitWait say where a slow plan spends its time:
	// waiting for MySQL pages, or for Kafka to take the batches.
	var readWait, commitWait time.Duration

	// checkpoint commits the open chunk with the engine's state; final
	// says it holds the last batches.
	checkpoint := func(final bool) (result, bool, error) {
		defer func(t0 time.Time) { commitWait += time.Since(t0) }(time.Now())
		chunks++
		cp := newCheckpoint(c.ID, c.Version, r.Offset, s.start, chunks, e)
		cp.Final = final
		meta, encErr := cp.encode()
		if encErr != nil {
			// Cannot happen with local dates from 1970 on (a few dozen
			// waves); if it did, retrying would fail the same way, so the
			// campaign stops here, its committed chunks kept.
			if err := t.abort(ctx); err != nil {
				return 0, false, err
			}
			res, err := p.deadLetter(ctx, sess, r, c, "cannot checkpoint: "+encErr.Error())
			return res, false, err
		}
		ok, perr, err := t.commit(ctx, r.Offset, meta)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			return p.aborted(log, perr), false, nil
		}
		if p.testHook != nil {
			if err := p.testHook(hookEvent{campaign: c.ID, chunks: chunks, final: final}); err != nil {
				return 0, false, err
			}
		}
		return 0, true, nil
	}

	// nextChunk commits the open chunk with a checkpoint and begins the
	// next one; more is false when plan is to return res and err.
	nextChunk := func() (res result, more bool, err error) {
		if p.controls != nil && p.controls.Cancelled(c.ID) {
			log.Info("planner: campaign cancelled while planning")
			return resultAgain, false, t.abort(ctx)
		}
		if res, ok, err := checkpoint(false); err != nil || !ok {
			return res, false, err
		}
		if t, err = p.begin(ctx, sess, r); err != nil {
			return 0, false, err
		}
		return 0, true, nil
	}

	for {
		var msg pageMsg
		stopping, paged := false, false
		for !stopping && !paged {
			// A page read may take up to its query timeout, longer than
			// the broker's transaction timeout: a chunk holding records
			// would pin the last stable offset of every partition it
			// wrote to (other campaigns' due batches wait behind it) and
			// then be aborted by the broker. So the quarter-timeout
			// bound of full also holds while waiting: the chunk is
			// committed, and the page, read after the engine's position,
			// goes into the next one, as after a checkpoint mid-page.
			var timer *time.Timer
			var due <-chan time.Time
			if t.holdsRecords() {
				timer = time.NewTimer(time.Until(t.started.Add(p.cfg.TransactionTimeout / 4)))
				due = timer.C
			}
			waitStart := time.Now()
			select {
			case msg = <-pages:
				readWait += time.Since(waitStart)
				// A read the stop cancelled fails too: that is the stop, not a
				// MySQL failure (select picks either when both are ready).
				stopping = msg.err != nil && ctx.Err() != nil
				paged = true
			case <-ctx.Done():
				stopping = true
			case <-due:
				readWait += time.Since(waitStart)
				log.Debug("planner: committing the chunk while waiting for the next page", "chunks", chunks+1)
				if res, more, err := nextChunk(); !more {
					return res, err
				}
			}
			if timer != nil {
				timer.Stop()
			}
		}
		if ctx.Err() != nil && chunks == resumedChunks && t.handled == 0 && !t.holdsRecords() {
			// A stop before the attempt's first device (a page that came
			// with it is dropped) leaves the committed offset as it was:
			// a checkpoint now holds nothing an earlier one does not,
			// and a campaign that has none would get one carrying this
			// attempt's start, which its resume would keep, however late.
			log.Info("planner: stopping before the campaign's first page; nothing committed")
			return resultStopped, t.abort(ctx)
		}
		if paged && t.handled == 0 && !t.holdsRecords() {
			// The broker's transaction starts with its first record: a
			// chunk begun before a long wait is not that old yet.
			t.started = time.Now()
		}
		if stopping {
			// Stop at a page boundary: commit what the open chunk holds.
			res, ok, err := checkpoint(false)
			if err != nil || !ok {
				return res, err
			}
			log.Info("planner: stopping; campaign checkpointed", "chunks", chunks)
			return resultStopped, nil
		}
		if msg.err != nil {
			log.Error("planner: reading the audience failed; retrying from the last checkpoint", "err", msg.err)
			p.m.retries.WithLabelValues("mysql").Inc()
			return resultRetry, t.abort(ctx)
		}
		if msg.done {
			break
		}
		for i := range msg.page.Devices {
			if err := e.add(&msg.page.Devices[i]); err != nil {
				return 0, err
			}
			t.handled++
			if !t.full(e.batchSize) {
				continue
			}
			if res, more, err := nextChunk(); !more {
				return res, err
			}
		}
		free <- msg.page
		if p.controls != nil && p.controls.Cancelled(c.ID) {
			log.Info("planner: campaign cancelled while planning")
			return resultAgain, t.abort(ctx)
		}
	}

	if err := e.flush(); err != nil {
		return 0, err
	}
	// The row that says the version needs no plan (see skipReplay) comes
	// only after its last batches are committed: written in this chunk, a
	// crash or an abort between the write and the commit would have a
	// replay skip batches that were never sent. The final checkpoint
	// keeps the record polled until finish has written the row.
	res, ok, err := checkpoint(true)
	if err != nil || !ok {
		return res, err
	}
	return p.finish(ctx, sess, r, c, s, StatusPlanned, "", e.totals, "waves", len(e.waves), "chunks", chunks,
		"waited_for_mysql", readWait, "waited_for_kafka_commits", commitWait)
}

func (t *txn) flush() {
	_ = t.sess.Client().Flush(t.pctx)
}

// invalidBatchID is the batch id of a campaign's invalid-token results:
// there is no batch, but results are keyed by one.
func invalidBatchID(c *schemas.Campaign) string {
	return c.ID + ":v" + strconv.Itoa(c.Version) + ":invalid"
}

// resultID is deterministic in (batch id, token, attempt), so a result
// re-emitted by a retried chunk is recognised downstream.
func resultID(batchID, token string, attempt int) string {
	h := sha256.New()
	h.Write([]byte(batchID))
	h.Write([]byte{0})
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(attempt)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// invalidRecord is the invalid_token result of a device not batched.
func (p *Planner) invalidRecord(c *schemas.Campaign, d *Device, reason string) (*kgo.Record, error) {
	bid := invalidBatchID(c)
	res := schemas.Result{
		SchemaVersion:   schemas.SchemaVersion,
		ID:              resultID(bid, string(d.Token), 0),
		CampaignID:      c.ID,
		CampaignVersion: c.Version,
		BatchID:         bid,
		App:             c.App,
		DeviceID:        d.ID,
		UserID:          string(d.UserID),
		Token:           string(d.Token),
		Platform:        string(d.Platform),
		Locale:          string(d.Locale),
		Timezone:        string(d.Timezone),
		Outcome:         schemas.OutcomeInvalidToken,
		Reason:          reason,
		Attempt:         0,
		At:              p.now().UTC(),
	}
	v, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("planner: encode invalid-token result: %w", err)
	}
	return &kgo.Record{
		Topic: p.cfg.Kafka.Topics.Results.Name,
		Key:   []byte(c.App + "/" + string(d.Token)),
		Value: v,
		Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSchema, Value: []byte("result.v1")},
			{Key: kafka.HeaderCampaignID, Value: []byte(c.ID)},
		},
	}, nil
}
