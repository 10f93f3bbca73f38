package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/promset"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// AuditStage names the auditor in its dead letters: the planner, whose
// processes run it (the dead-letter schema's stages are the processes).
const AuditStage = "planner"

// AuditorConfig configures an Auditor.
type AuditorConfig struct {
	// Kafka is the connection; only brokers, TLS and SASL are used.
	Kafka config.Kafka
	// Topic is the compacted control topic.
	Topic string
	// Group is the auditor's consumer group: one per deployment, shared by
	// every planner, so each record is audited by one of them.
	Group string
	// DeadLetterTopic receives the invalid records.
	DeadLetterTopic string
	// RetryBackoff is the wait between attempts to write dead letters the
	// broker did not take. Default 1s.
	RetryBackoff time.Duration
}

// Auditor dead-letters the control topic's invalid records, with the
// reason. Every planner and dispatcher reads the whole topic through its own
// View, which can only skip such a record: dead-lettering from each would
// write one letter per instance. The auditor reads the topic as one
// consumer group instead, so each invalid record is dead-lettered once; again
// only when the group's offsets are reset (a replay) or a member stops
// between a letter and its commit.
type Auditor struct {
	cfg     AuditorConfig
	log     *slog.Logger
	cl      *kgo.Client
	sent    prometheus.Counter
	dropped prometheus.Counter
}

// NewAuditor builds an Auditor. Its client starts joining the group at
// once; Run leaves it and closes the client, so a caller that fails before
// running it ends the process (or the demo) and the member with it.
func NewAuditor(cfg AuditorConfig, deps Deps) (*Auditor, error) {
	switch {
	case cfg.Topic == "":
		return nil, errors.New("control audit: topic is required")
	case cfg.Group == "":
		return nil, errors.New("control audit: group is required")
	case cfg.DeadLetterTopic == "":
		return nil, errors.New("control audit: dead-letter topic is required")
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl, err := kafka.NewClient(cfg.Kafka,
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// A partition is revoked only between polls, after the letters of
		// what was polled are written and committed.
		kgo.BlockRebalanceOnPoll(),
	)
	if err != nil {
		return nil, fmt.Errorf("control audit: %w", err)
	}
	a := &Auditor{cfg: cfg, log: log.With("component", "control-audit"), cl: cl}
	var s promset.Set
	a.dropped = s.Counter("pushlane_control_dead_letters_dropped_total",
		"Invalid campaign-control records whose dead letter the broker refused even at its smallest (logged with their position).")
	a.sent = s.Counter("pushlane_control_dead_letters_total",
		"Invalid campaign-control records dead-lettered by the auditor (one planner per record).")
	if err := s.Register(deps.Metrics); err != nil {
		cl.Close()
		return nil, fmt.Errorf("control audit: register metrics: %w", err)
	}
	return a, nil
}

// Run audits until ctx ends, then leaves the group. What it polled and
// could not dead-letter by then stays uncommitted, for the next member.
func (a *Auditor) Run(ctx context.Context) error {
	defer a.cl.Close()
	for {
		fs := a.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			a.cl.AllowRebalance()
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			a.log.Warn("fetch failed", "topic", t, "partition", p, "err", err)
		})
		var letters []*kgo.Record
		var encodeErr error
		fs.EachRecord(func(r *kgo.Record) {
			reason := invalid(r)
			if reason == "" {
				return
			}
			dl, err := kafka.DeadLetterRecord(a.cfg.DeadLetterTopic, AuditStage, r, reason, time.Now())
			if err != nil {
				encodeErr = errors.Join(encodeErr, err)
				return
			}
			a.log.Error("invalid campaign-control record dead-lettered", "partition", r.Partition, "offset", r.Offset, "reason", reason)
			letters = append(letters, dl)
		})
		if encodeErr != nil {
			// Not a broker's refusal: the same records would fail again.
			a.cl.AllowRebalance()
			return fmt.Errorf("control audit: %w", encodeErr)
		}
		if !a.write(ctx, letters) {
			a.cl.AllowRebalance()
			return nil
		}
		if err := a.cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			// The letters are written; a member that reads these records
			// again writes them again, which a replay does too.
			a.log.Warn("commit failed", "err", err)
		}
		a.cl.AllowRebalance()
	}
}

// write produces the letters until the broker took every one, or ctx ends
// (false: they stay uncommitted). A letter the broker refuses outright
// (a dead-letter topic whose limit is under the letter's) is written
// slimmed, or dropped and counted when even its smallest is refused
// (kafka.WriteDeadLetters): retried as it was, it would hold the auditor,
// and the group's rebalances, for good. A retry after another failure
// writes only the letters not written yet.
func (a *Auditor) write(ctx context.Context, letters []*kgo.Record) bool {
	for len(letters) > 0 {
		var failed []*kgo.Record
		var first error
		for _, w := range kafka.WriteDeadLetters(ctx, a.cl, letters) {
			switch {
			case w.Err == nil:
				a.sent.Inc()
			case w.Dropped:
				var dl schemas.DeadLetter
				_ = json.Unmarshal(w.Letter.Value, &dl)
				a.dropped.Inc()
				a.log.Error("dead letter refused even at its smallest; the invalid record stays on the control topic only",
					"topic", dl.Topic, "partition", dl.Partition, "offset", dl.Offset, "letter_bytes", len(w.Letter.Value), "err", w.Err)
			default:
				failed = append(failed, w.Letter)
				if first == nil {
					first = w.Err
				}
			}
		}
		if len(failed) == 0 {
			return true
		}
		a.log.Warn("dead letters not written; retrying", "records", len(failed), "err", first)
		letters = failed
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.cfg.RetryBackoff):
		}
	}
	return true
}

// invalid is why r is not a campaign-control event ("" if it is). A
// tombstone (no value) is valid: it forgets a campaign's state. The View
// skips exactly these records.
func invalid(r *kgo.Record) string {
	if r.Value == nil {
		return ""
	}
	if _, err := schemas.DecodeCampaignControl(r.Value); err != nil {
		return err.Error()
	}
	return ""
}
