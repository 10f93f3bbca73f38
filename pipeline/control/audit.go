package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
// (false: they stay uncommitted). A letter the broker refuses outright (too
// large: DeadLetterRecord cuts the value and the reason, not the key or the
// headers, which a control record may carry up to the broker's limit) is
// written once more without them; retried as it was, it would hold the
// auditor, and the group's rebalances, for good.
func (a *Auditor) write(ctx context.Context, letters []*kgo.Record) bool {
	// A refusal fails the whole batch a record went in, so after one each
	// letter is produced on its own: only a letter refused alone is the
	// one too large.
	alone := false
	for len(letters) > 0 {
		var res kgo.ProduceResults
		if alone {
			for _, l := range letters {
				res = append(res, a.cl.ProduceSync(ctx, l)...)
			}
		} else {
			res = a.cl.ProduceSync(ctx, letters...)
		}
		var failed []*kgo.Record
		for _, r := range res {
			switch {
			case r.Err == nil:
				a.sent.Inc()
			case kafka.Refused(r.Err) && !alone:
				failed = append(failed, r.Record)
			case kafka.Refused(r.Err):
				if smaller := slim(r.Record, r.Err); smaller != nil {
					failed = append(failed, smaller)
					break
				}
				var dl schemas.DeadLetter
				_ = json.Unmarshal(r.Record.Value, &dl)
				a.dropped.Inc()
				a.log.Error("dead letter refused even without the original's key and headers; the invalid record stays on the control topic only",
					"topic", dl.Topic, "partition", dl.Partition, "offset", dl.Offset, "letter_bytes", len(r.Record.Value), "err", r.Err)
			default:
				failed = append(failed, r.Record)
			}
		}
		if len(failed) == 0 {
			return true
		}
		if kafka.Refused(res.FirstErr()) && !alone {
			alone = true
			letters = failed
			continue
		}
		alone = true
		a.log.Warn("dead letters not written; retrying", "records", len(failed), "err", res.FirstErr())
		letters = failed
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.cfg.RetryBackoff):
		}
	}
	return true
}

// headerSlim marks a letter slim made: "1" without the original's
// headers, "2" without its key too.
const headerSlim = "pushlane-dead-letter-slim"

// slim makes a letter the broker refused smaller, its body saying why:
// first without the original's headers, and only if that is refused too,
// without its key (which names the campaign, and without which a re-drive
// to the compacted control topic is refused). It returns nil when there is
// nothing left to leave out.
func slim(letter *kgo.Record, refused error) *kgo.Record {
	level := slimLevel(letter) + 1
	if level > 2 {
		return nil
	}
	var dl schemas.DeadLetter
	if err := json.Unmarshal(letter.Value, &dl); err != nil {
		return nil
	}
	out := &kgo.Record{Topic: letter.Topic, Key: letter.Key}
	left := "headers"
	dl.Headers = nil
	if level == 2 {
		left = "key and headers"
		out.Key, dl.Key = nil, nil
	}
	if level == 1 {
		dl.Reason = fmt.Sprintf("%s (the original's %s are left out: the broker refused the dead letter with them: %v)", dl.Reason, left, refused)
	} else {
		dl.Reason = strings.Replace(dl.Reason, "the original's headers are left out", "the original's key and headers are left out", 1)
	}
	if len(dl.Value) > kafka.KeptDeadLetterValue {
		if dl.ValueBytes == 0 {
			dl.ValueBytes = len(dl.Value)
		}
		dl.Value = dl.Value[:kafka.KeptDeadLetterValue]
	}
	v, err := json.Marshal(dl)
	if err != nil {
		return nil
	}
	out.Value = v
	for _, h := range letter.Headers {
		if h.Key == kafka.HeaderSchema {
			out.Headers = append(out.Headers, h)
		}
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: headerSlim, Value: []byte(strconv.Itoa(level))})
	return out
}

// slimLevel is what slim left out of letter: 0 nothing, 1 the original's
// headers, 2 its key too.
func slimLevel(letter *kgo.Record) int {
	v, _ := kafka.Header(letter, headerSlim)
	n, _ := strconv.Atoi(v)
	return n
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
