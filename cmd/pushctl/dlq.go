package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// headerRedrivenFrom marks a re-driven record with the dead letter it came
// from, so a re-drive can be traced and is not mistaken for the original.
const headerRedrivenFrom = "pushlane-redriven-from"

func dlqCommand() *command {
	return &command{
		name:    "dlq",
		args:    "list [-stage S] [-n N] [-json] | show <partition>:<offset> [-raw] | redrive <partition>:<offset> [-f FIXED] [-kind KIND]",
		summary: "List, show and re-drive dead letters",
		details: `
A dead letter is an event a stage could not process, kept with the reason, where it
came from (topic/partition@offset) and its original bytes. A dead letter is named by
its own position in the dead-letter topic, <partition>:<offset>, as "dlq list" shows.

  list      one line per dead letter, oldest first: its position, when, the stage,
            the source record and the reason. -json prints one JSON object per line.
  show      the reason, the source and the original bytes. -raw writes only the
            original bytes (to fix them: pushctl dlq show 1:7 -raw > fixed.json).
  redrive   validates the original bytes, or the fixed file given with -f, as the
            event kind of the source topic, then produces them to the source topic
            with the original key and headers (plus pushlane-redriven-from). A batch
            gets its key and scheduling headers (send-at, expires-at, ids) from the
            event itself, so a fixed send_at is what the delay ladder routes by, and
            one from a delay tier goes to the tier (or the ready topic) the planner
            would write it to now; its hop count is kept. A campaign-control event
            gets its key from the event too, as cancel and pause write it
            ("<campaign id>/cancel" for a cancel, the campaign id for a pause or
            resume), whatever the original's key was or whether the dead letter
            kept one. An event that is still invalid is not sent (exit 3).`,
		examples: []string{
			"pushctl dlq list",
			"pushctl dlq list -stage planner -n 20",
			"pushctl dlq show 1:7",
			"pushctl dlq show 1:7 -raw > fixed.json && $EDITOR fixed.json && pushctl dlq redrive 1:7 -f fixed.json",
			"pushctl dlq redrive 0:42",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			stage := fs.String("stage", "", "list: only dead letters of this `stage` (planner, delay, dispatcher, feedback)")
			limit := fs.Int("n", 0, "list: only the newest `N` dead letters")
			asJSON := fs.Bool("json", false, "list: one JSON object per line")
			raw := fs.Bool("raw", false, "show: write only the original bytes")
			fixed := fs.String("f", "", "redrive: send this `file` instead of the original bytes")
			kind := fs.String("kind", "", "redrive: the event `kind` when the source topic is not one of the pipeline's")
			return func(ctx context.Context, args []string) error {
				if len(args) == 0 {
					return usagef("want a subcommand: list, show or redrive")
				}
				sub, args := args[0], args[1:]
				only := func(allowed ...string) error {
					given := map[string]bool{}
					fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
					for name := range given {
						ok := false
						for _, a := range allowed {
							ok = ok || a == name
						}
						if !ok {
							return usagef("-%s does not apply to dlq %s", name, sub)
						}
					}
					return nil
				}
				switch sub {
				case "list":
					if err := only("stage", "n", "json"); err != nil {
						return err
					}
					if len(args) > 0 {
						return usagef("dlq list takes no arguments")
					}
					return c.dlqList(ctx, *stage, *limit, *asJSON)
				case "show", "redrive":
					if len(args) != 1 {
						return usagef("dlq %s wants one <partition>:<offset>", sub)
					}
					p, o, err := parsePosition(args[0])
					if err != nil {
						return err
					}
					if sub == "show" {
						if err := only("raw"); err != nil {
							return err
						}
						return c.dlqShow(ctx, p, o, *raw)
					}
					if err := only("f", "kind"); err != nil {
						return err
					}
					return c.dlqRedrive(ctx, p, o, *fixed, *kind)
				}
				return usagef("unknown dlq subcommand %q: want list, show or redrive", sub)
			}
		},
	}
}

func parsePosition(s string) (int32, int64, error) {
	ps, offs, ok := strings.Cut(s, ":")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(offs, 10, 64)
	if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
		return 0, 0, usagef("%q is not <partition>:<offset>, e.g. 1:7 (see dlq list)", s)
	}
	return int32(p), o, nil
}

type deadLetterEntry struct {
	rec *kgo.Record
	dl  *schemas.DeadLetter
	err error // the dead letter itself does not decode
}

func (c *cli) readDeadLetters(ctx context.Context, cfg *config.Config, ranges map[int32]offsetRange) ([]deadLetterEntry, error) {
	recs, err := c.readTopic(ctx, cfg, cfg.Kafka.Topics.DeadLetter.Name, ranges)
	if err != nil {
		return nil, err
	}
	out := make([]deadLetterEntry, len(recs))
	for i, r := range recs {
		dl, err := schemas.DecodeDeadLetter(r.Value)
		out[i] = deadLetterEntry{rec: r, dl: dl, err: err}
	}
	return out, nil
}

func (c *cli) dlqList(ctx context.Context, stage string, limit int, asJSON bool) error {
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	entries, err := c.readDeadLetters(ctx, cfg, nil)
	if err != nil {
		return err
	}
	if stage != "" {
		kept := entries[:0]
		for _, e := range entries {
			if e.dl != nil && e.dl.Stage == stage {
				kept = append(kept, e)
			}
		}
		entries = kept
	}
	// Oldest first across partitions; the position breaks ties.
	sort.SliceStable(entries, func(i, j int) bool { return entryTime(entries[i]).Before(entryTime(entries[j])) })
	if limit > 0 && len(entries) > limit {
		entries = entries[len(entries)-limit:]
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, e := range entries {
			line := map[string]any{"partition": e.rec.Partition, "offset": e.rec.Offset}
			if e.err != nil {
				line["error"] = e.err.Error()
			} else {
				line["stage"], line["reason"], line["at"] = e.dl.Stage, e.dl.Reason, e.dl.At
				line["source"] = map[string]any{"topic": e.dl.Topic, "partition": e.dl.Partition, "offset": e.dl.Offset}
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintf(c.stdout, "no dead letters in %s\n", cfg.Kafka.Topics.DeadLetter.Name)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tAT\tSTAGE\tSOURCE\tREASON")
	for _, e := range entries {
		pos := fmt.Sprintf("%d:%d", e.rec.Partition, e.rec.Offset)
		if e.err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\tundecodable dead letter: %s\n", pos, e.rec.Timestamp.UTC().Format(time.RFC3339), oneLine(e.err.Error(), 200))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%d@%d\t%s\n", pos, e.dl.At.UTC().Format(time.RFC3339), e.dl.Stage,
			e.dl.Topic, e.dl.Partition, e.dl.Offset, oneLine(e.dl.Reason, 200))
	}
	return tw.Flush()
}

func entryTime(e deadLetterEntry) time.Time {
	if e.dl != nil {
		return e.dl.At
	}
	return e.rec.Timestamp
}

// oneLine keeps a table row on one line and bounded.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max-1]) + "…"
	}
	return s
}

// deadLetterAt reads the dead letter at partition:offset.
func (c *cli) deadLetterAt(ctx context.Context, cfg *config.Config, p int32, o int64) (*kgo.Record, *schemas.DeadLetter, error) {
	topic := cfg.Kafka.Topics.DeadLetter.Name
	ranges, err := c.partitionRanges(ctx, cfg, topic)
	if err != nil {
		return nil, nil, err
	}
	r, ok := ranges[p]
	switch {
	case !ok:
		return nil, nil, fmt.Errorf("%s has no partition %d (it has %d)", topic, p, len(ranges))
	case o < r.start:
		return nil, nil, fmt.Errorf("%d:%d is gone: partition %d now starts at offset %d (retention)", p, o, p, r.start)
	case o >= r.end:
		return nil, nil, fmt.Errorf("no dead letter at %d:%d: partition %d ends at offset %d", p, o, p, r.end)
	}
	entries, err := c.readDeadLetters(ctx, cfg, map[int32]offsetRange{p: {start: o, end: o + 1}})
	if err != nil {
		return nil, nil, err
	}
	if len(entries) != 1 || entries[0].rec.Offset != o {
		return nil, nil, fmt.Errorf("no dead letter at %d:%d (a transaction marker or an aborted record)", p, o)
	}
	if entries[0].err != nil {
		return entries[0].rec, nil, fmt.Errorf("the record at %d:%d is not a dead letter: %w", p, o, entries[0].err)
	}
	return entries[0].rec, entries[0].dl, nil
}

func (c *cli) dlqShow(ctx context.Context, p int32, o int64, raw bool) error {
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	_, dl, err := c.deadLetterAt(ctx, cfg, p, o)
	if err != nil {
		return err
	}
	if raw {
		_, err := c.stdout.Write(dl.Value)
		return err
	}
	w := c.stdout
	fmt.Fprintf(w, "dead letter:  %d:%d\n", p, o)
	fmt.Fprintf(w, "at:           %s\n", dl.At.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "stage:        %s\n", dl.Stage)
	fmt.Fprintf(w, "source:       %s/%d@%d\n", dl.Topic, dl.Partition, dl.Offset)
	fmt.Fprintf(w, "reason:       %s\n", dl.Reason)
	if dl.Key != nil {
		fmt.Fprintf(w, "key:          %s\n", printable(dl.Key))
	}
	if len(dl.Headers) > 0 {
		names := make([]string, 0, len(dl.Headers))
		for k := range dl.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for i, k := range names {
			label := ""
			if i == 0 {
				label = "headers:"
			}
			fmt.Fprintf(w, "%-14s%s: %s\n", label, k, dl.Headers[k])
		}
	}
	fmt.Fprintf(w, "value (%d bytes):\n", len(dl.Value))
	fmt.Fprintln(w, printable(dl.Value))
	return nil
}

// printable shows text as is and anything else Go-quoted, so binary
// garbage cannot mess up a terminal.
func printable(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' }) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

// kindOfTopic is the event kind a pipeline topic carries.
func kindOfTopic(cfg *config.Config, topic string) (string, bool) {
	t := cfg.Kafka.Topics
	switch topic {
	case t.Campaigns.Name:
		return schemas.KindCampaign, true
	case t.Control.Name:
		return schemas.KindCampaignControl, true
	case t.Ready.Name:
		return schemas.KindBatch, true
	case t.Results.Name:
		return schemas.KindResult, true
	case t.Registrations.Name:
		return schemas.KindDeviceRegistration, true
	case t.DeadLetter.Name:
		return schemas.KindDeadLetter, true
	}
	for _, tier := range cfg.DelayTiers() {
		if topic == tier {
			return schemas.KindBatch, true
		}
	}
	return "", false
}

// originalKey is the key the re-driven record goes under: the copy in the
// letter's body; for a letter slimmed past that copy
// (kafka.HeaderDeadLetterSlim 2 or 3), the letter's own key, which still is
// the original's; for one that left the key out too (4), or an original
// without one, the key the event's topic gives it (README, Topics), so that
// no event is re-driven keyless onto a partition its key would not choose.
// Batches and control events are keyed again from the event below in any
// case.
func originalKey(letter *kgo.Record, dl *schemas.DeadLetter, event any) []byte {
	if dl.Key != nil {
		return dl.Key
	}
	for _, h := range letter.Headers {
		if h.Key == kafka.HeaderDeadLetterSlim && (string(h.Value) == "2" || string(h.Value) == "3") && len(letter.Key) > 0 {
			return letter.Key
		}
	}
	switch e := event.(type) {
	case *schemas.Campaign:
		return []byte(e.ID)
	case *schemas.DeviceRegistration:
		return []byte(e.App + "/" + e.Token)
	case *schemas.Result:
		return []byte(e.App + "/" + e.Token)
	}
	return nil
}

func (c *cli) dlqRedrive(ctx context.Context, p int32, o int64, fixedFile, kind string) error {
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	if kind != "" {
		if !validKind(kind) {
			return usagef("-kind %q: want one of %s", kind, strings.Join(schemas.Kinds, ", "))
		}
	}
	letter, dl, err := c.deadLetterAt(ctx, cfg, p, o)
	if err != nil {
		return err
	}
	if kind == "" {
		var ok bool
		if kind, ok = kindOfTopic(cfg, dl.Topic); !ok {
			return usagef("%s is not a topic of this configuration: say what it carries with -kind", dl.Topic)
		}
	}
	value := dl.Value
	what := "the original bytes"
	if dl.ValueBytes > 0 && fixedFile == "" {
		return invalid(fmt.Errorf("%d:%d keeps only %d of the original's %d bytes: not re-driven; fetch it from %s/%d@%d and give it with -f",
			p, o, len(dl.Value), dl.ValueBytes, dl.Topic, dl.Partition, dl.Offset))
	}
	if fixedFile != "" {
		if value, err = c.readFile(fixedFile); err != nil {
			return err
		}
		what = fixedFile
	}
	event, err := schemas.Decode(kind, value)
	if err != nil {
		return invalid(fmt.Errorf("%s of %d:%d: still invalid, not re-driven: %w", what, p, o, err))
	}
	rec := &kgo.Record{Topic: dl.Topic, Key: originalKey(letter, dl, event), Value: value}
	names := make([]string, 0, len(dl.Headers))
	for k := range dl.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(dl.Headers[k])})
	}
	if ctl, ok := event.(*schemas.CampaignControl); ok {
		if err := controlFromEvent(rec, ctl); err != nil {
			return invalid(fmt.Errorf("%s of %d:%d: not re-driven: %w", what, p, o, err))
		}
	}
	if b, ok := event.(*schemas.Batch); ok {
		scheduleFromBatch(rec, b)
		// Back on a delay tier it goes where the planner would write it
		// now: its source tier no longer fits a send_at that time or a
		// fix has moved, and a record that does not fit its tier is
		// re-written at once (if written by the planner) or, forwarded
		// before (its hop kept), held there up to an hour with every
		// record behind it.
		if ladder := delay.LadderFrom(cfg); slices.Contains(ladder.Tiers, rec.Topic) {
			rec.Topic = ladder.Route(b.SendAt, time.Now())
		}
	}
	kafka.SetHeader(rec, headerRedrivenFrom, fmt.Sprintf("%s/%d@%d", cfg.Kafka.Topics.DeadLetter.Name, p, o))
	cl, err := c.kafkaClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.ProduceSync(ctx, rec).First()
	if err != nil {
		return fmt.Errorf("re-drive %d:%d to %s: %w", p, o, rec.Topic, err)
	}
	fmt.Fprintf(c.stdout, "re-drove %d:%d (%s) to %s/%d@%d\n", p, o, what, res.Topic, res.Partition, res.Offset)
	return nil
}

// scheduleFromBatch re-derives a batch record's key and scheduling headers
// from the event itself. The delay ladder routes on headers and never reads
// the value, so a tier record dead-lettered for a missing or unreadable
// send-at would otherwise come straight back to the dead-letter topic; and
// a batch fixed with -f (a new send_at or expires_at) must be routed by
// what it now says. The hop count is kept when it is readable
// (delay.SetScheduleHeaders).
func scheduleFromBatch(rec *kgo.Record, b *schemas.Batch) {
	delay.SetScheduleHeaders(rec, delay.Schedule{BatchID: b.ID, CampaignID: b.CampaignID, SendAt: b.SendAt, ExpiresAt: b.ExpiresAt})
	rec.Key = []byte(b.ID)
}

// controlFromEvent re-derives a control record's key and headers from the
// event, as control.Record builds them. The key decides what compaction
// keeps: a cancel re-driven under its campaign id (the key of a letter
// whose fix turned it into a cancel) would be replaced by the campaign's
// next pause or resume, and a cancel would no longer be final; a letter
// whose key was left out (kafka.DeadLetterRecord drops an oversized one)
// would be refused by the compacted topic, which takes no keyless record.
// The value is sent as it is; only the key and headers come from
// control.Record.
func controlFromEvent(rec *kgo.Record, ctl *schemas.CampaignControl) error {
	derived, err := control.Record(rec.Topic, *ctl)
	if err != nil {
		return err
	}
	for _, h := range derived.Headers {
		kafka.SetHeader(rec, h.Key, string(h.Value))
	}
	rec.Key = derived.Key
	return nil
}

func validKind(kind string) bool {
	for _, k := range schemas.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// readFile reads path, or stdin for "-".
func (c *cli) readFile(path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(c.stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return b, nil
}
