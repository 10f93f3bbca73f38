package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
)

func replayCommand() *command {
	return &command{
		name:    "replay",
		args:    "-topic TOPIC -group GROUP -from WHEN [-to WHEN] [-dry-run] [-force]",
		summary: "Rewind a stopped consumer group to re-run a range of a topic",
		details: `
Sets GROUP's committed offsets on TOPIC back to the first record at or after -from,
so that the stage re-processes the records from there when it starts again. Stage
groups are <kafka.group_prefix>-<stage>: pushlane-planner, pushlane-delay,
pushlane-dispatcher, pushlane-feedback. The stages are idempotent per record (batch
ids and result ids are deterministic), within two bounds that this command checks:
the planner's checkpoints and the dispatcher's 35 days of finished batch ids.

WHEN is "start", "end" (for -to), an RFC 3339 time, or -DURATION for that long ago
(-from -2h). -to defaults to end.

Refused (exit 1), changing nothing:
  - while the group has active members: stop or scale the stage to zero first;
  - when the group has no committed offsets on the topic (a misspelt group);
  - when a partition's committed offset is before -from: the group has not processed
    up to there, and moving it forward would skip records;
  - when a partition's committed offset is after -to: the group would also re-run
    records past the range (use -to end to re-run everything since -from).

Refused too unless -force is given, because a re-run could send devices twice or
not at all:
  - moving back a partition whose committed offset holds the planner's checkpoint
    of a campaign (one being planned, or planned and not yet recorded in MySQL).
    The checkpoint is the commit's metadata and stays behind when the offset moves:
    the planner would plan the campaign again from its start, at a new time, and an
    audience changed since shifts devices between batches whose ids the dispatcher
    already finished (lost) or not (sent again). Let the planner finish it first;
  - re-running records older than 35 days of the ready topic, a delay tier or the
    campaigns topic: the dispatcher keeps finished batch ids 35 days (its
    ProgressRetention) and sends a batch it has forgotten again, and the planner
    skips a campaign version only while MySQL records it as finished (a failed one
    fixed since, or one whose row was deleted, is planned and sent again).

Offsets between the group and the range that hold only transaction markers or
aborted records (the planner writes batches in transactions) count as neither. A
partition the group has no offset for is left unchanged: every stage reads such a
partition from its start, which re-runs the range already. Counts are of offsets, so
on a transactional topic they include the markers.

The plan is printed per partition; -dry-run prints it and stops. A partition already
at its range start is left unchanged, with its commit's metadata (where the planner
keeps the checkpoint of a campaign in progress).`,
		examples: []string{
			"pushctl replay -topic pushlane.results -group pushlane-feedback -from 2026-03-20T09:00:00Z -dry-run",
			"pushctl replay -topic pushlane.campaigns -group pushlane-planner -from -6h",
			"pushctl replay -topic pushlane.ready -group pushlane-dispatcher -from 2026-03-20T09:00:00Z -to 2026-03-20T10:00:00Z",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			topic := fs.String("topic", "", "the `topic` to re-run")
			group := fs.String("group", "", "the consumer `group` to rewind, e.g. pushlane-feedback")
			from := fs.String("from", "", "re-run from the first record at or after `WHEN`: start, RFC 3339 or -DURATION")
			to := fs.String("to", "end", "the range ends at `WHEN`: end, RFC 3339 or -DURATION")
			dryRun := fs.Bool("dry-run", false, "print the plan and change nothing")
			force := fs.Bool("force", false, "also move back partitions holding a planner checkpoint and re-run records older than 35 days (see above: devices may be lost or sent twice)")
			return func(ctx context.Context, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				for name, v := range map[string]string{"topic": *topic, "group": *group, "from": *from} {
					if v == "" {
						return usagef("-%s is required", name)
					}
				}
				now := c.now()
				fromAt, err := parseReplayTime("from", *from, now)
				if err != nil {
					return err
				}
				toAt, err := parseReplayTime("to", *to, now)
				if err != nil {
					return err
				}
				if *from == "end" {
					return usagef("-from end would re-run nothing")
				}
				if *to == "start" {
					return usagef("-to start would re-run nothing")
				}
				if !fromAt.IsZero() && !toAt.IsZero() && !toAt.After(fromAt) {
					return usagef("-to %s is not after -from %s", *to, *from)
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				cl, adm, err := c.admin(cfg)
				if err != nil {
					return err
				}
				defer cl.Close()
				r := replay{adm: adm, topic: *topic, group: *group, force: *force, now: now,
					retentionRisk: retentionRisk(cfg, *topic),
					hasRecords: func(ctx context.Context, p int32, lo, hi int64) (bool, error) {
						found := false
						err := c.scanTopic(ctx, cfg, *topic, map[int32]offsetRange{p: {start: lo, end: hi}}, func(*kgo.Record) bool {
							found = true
							return false
						})
						if err != nil {
							return false, fmt.Errorf("read %s/%d from %d to %d, between the group and the range: %w", *topic, p, lo, hi, err)
						}
						return found, nil
					}}
				plan, forced, err := r.plan(ctx, *from, fromAt, *to, toAt)
				if err != nil {
					return err
				}
				for _, f := range forced {
					fmt.Fprintf(c.stderr, "pushctl replay: -force: %s\n", f)
				}
				total := int64(0)
				for _, p := range plan {
					if p.committed < 0 {
						fmt.Fprintf(c.stdout, "%s/%d: no committed offset, unchanged (the stage reads it from its start)\n", r.topic, p.partition)
						continue
					}
					if p.target == p.committed {
						fmt.Fprintf(c.stdout, "%s/%d: %d, unchanged\n", r.topic, p.partition, p.committed)
						continue
					}
					fmt.Fprintf(c.stdout, "%s/%d: %d -> %d (re-runs %d records)\n", r.topic, p.partition, p.committed, p.target, p.committed-p.target)
					total += p.committed - p.target
				}
				if *dryRun {
					fmt.Fprintf(c.stdout, "dry run: %s would re-run %d records of %s; nothing changed\n", r.group, total, r.topic)
					return nil
				}
				if err := r.commit(ctx, plan); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "%s rewound: it re-runs %d records of %s when it starts\n", r.group, total, r.topic)
				return nil
			}
		},
	}
}

// parseReplayTime reads start, end, -DURATION or RFC 3339; start and end
// are the zero time (resolved per partition later).
func parseReplayTime(name, v string, now time.Time) (time.Time, error) {
	switch {
	case v == "start" || v == "end":
		return time.Time{}, nil
	case strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v[1:])
		if err != nil || d <= 0 {
			return time.Time{}, usagef("-%s %q: want start, end, RFC 3339, or -DURATION such as -2h", name, v)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("-%s %q: want start, end, RFC 3339 (2026-03-20T09:00:00Z), or -DURATION", name, v)
	}
	return t, nil
}

// progressRetention is how long the dispatcher keeps finished batch ids
// (pipeline/dispatcher Config.ProgressRetention, its default, which no
// configuration key changes): a batch re-run after it is sent again.
const progressRetention = 35 * 24 * time.Hour

// retentionRisk says what re-running topic's records older than
// progressRetention does, or "" when that is as safe as any re-run: the
// ready topic and the delay tiers carry batches, and the campaigns topic
// plans them.
func retentionRisk(cfg *config.Config, topic string) string {
	t := cfg.Kafka.Topics
	switch {
	case topic == t.Ready.Name || slices.Contains(cfg.DelayTiers(), topic):
		return "the dispatcher has forgotten their batches as finished and would send them again"
	case topic == t.Campaigns.Name:
		return "the dispatcher has forgotten the batches planned from them, which a version MySQL does not record as finished (failed, or its row deleted) would send again"
	}
	return ""
}

// plannerCheckpoint is what pushctl reads of the planner's checkpoint, the
// metadata the planner commits with a campaign record's offset while it
// plans it (pipeline/planner/checkpoint.go: checkpointPrefix, then the
// checkpoint as JSON; Final once the last batches are committed). Mirrored,
// as the planner does not export it.
type plannerCheckpoint struct {
	Campaign string `json:"c"`
	Version  int    `json:"v"`
	Offset   int64  `json:"o"`
	Chunks   int    `json:"k"`
	Final    bool   `json:"f"`
}

const plannerCheckpointPrefix = "pushlane-planner/1 "

// decodePlannerCheckpoint reads a commit's metadata as the planner does; ok
// is false for anything else (franz-go writes the member id there).
func decodePlannerCheckpoint(meta string) (ck plannerCheckpoint, ok bool) {
	rest, found := strings.CutPrefix(meta, plannerCheckpointPrefix)
	if !found || json.Unmarshal([]byte(rest), &ck) != nil {
		return plannerCheckpoint{}, false
	}
	return ck, true
}

type replay struct {
	adm          *kadm.Client
	topic, group string
	force        bool
	now          time.Time
	// retentionRisk: what re-running the topic's records older than
	// progressRetention does; "" for nothing to refuse.
	retentionRisk string
	// hasRecords says whether partition holds a committed record (not a
	// transaction marker, not an aborted record) in [lo, hi).
	hasRecords func(ctx context.Context, partition int32, lo, hi int64) (bool, error)
}

type partitionPlan struct {
	partition         int32
	committed, target int64 // both -1: the group has no offset here
	leaderEpoch       int32
}

// offsetsAt lists each partition's offset for WHEN: start, end, or the
// first record at or after a time.
func (r replay) offsetsAt(ctx context.Context, when string, at time.Time) (map[int32]int64, error) {
	var listed kadm.ListedOffsets
	var err error
	switch when {
	case "start":
		listed, err = r.adm.ListStartOffsets(ctx, r.topic)
	case "end":
		listed, err = r.adm.ListEndOffsets(ctx, r.topic)
	default:
		listed, err = r.adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), r.topic)
	}
	if err == nil {
		err = listed.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("topic %s does not exist", r.topic)
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s at %s: %w", r.topic, when, err)
	}
	out := map[int32]int64{}
	for p, o := range listed[r.topic] {
		out[p] = o.Offset
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s does not exist", r.topic)
	}
	return out, nil
}

// activeMembers names the group's members, classic or KIP-848.
func (r replay) activeMembers(ctx context.Context) ([]string, error) {
	var members []string
	classic, err := r.adm.DescribeGroups(ctx, r.group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", r.group, err)
	}
	if g, ok := classic[r.group]; ok {
		if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
			return nil, fmt.Errorf("describe group %s: %w", r.group, g.Err)
		}
		for _, m := range g.Members {
			members = append(members, m.ClientID+"@"+m.ClientHost)
		}
	}
	modern, err := r.adm.DescribeConsumerGroups(ctx, r.group)
	if err == nil {
		if g, ok := modern[r.group]; ok && g.Err == nil {
			for _, m := range g.Members {
				members = append(members, m.ClientID+"@"+m.ClientHost)
			}
		}
	} else if !errors.Is(err, kerr.UnsupportedVersion) && !errors.Is(err, kerr.GroupIDNotFound) {
		// A broker without KIP-848 answers that it does not know the
		// request; anything else is a real failure to check.
		var se *kadm.ShardErrors
		if !errors.As(err, &se) {
			return nil, fmt.Errorf("describe consumer group %s: %w", r.group, err)
		}
	}
	sort.Strings(members)
	return members, nil
}

// plan returns each partition's move, or an error naming every partition
// it refuses to move; forced lists the hazards -force let through.
func (r replay) plan(ctx context.Context, from string, fromAt time.Time, to string, toAt time.Time) (plan []partitionPlan, forced []string, err error) {
	plan, problems, hazards, err := r.planMoves(ctx, from, fromAt, to, toAt)
	if err != nil {
		return nil, nil, err
	}
	if len(problems) > 0 || (len(hazards) > 0 && !r.force) {
		if !r.force {
			for _, h := range hazards {
				problems = append(problems, h+" (-force to move it anyway)")
			}
		}
		return nil, nil, fmt.Errorf("refused, nothing changed:\n  %s", strings.Join(problems, "\n  "))
	}
	return plan, hazards, nil
}

// hazards lists what moving partition p from committed (with the commit's
// metadata meta) back to target would send twice or lose.
func (r replay) hazards(ctx context.Context, p int32, committed, target int64, meta string, horizon map[int32]int64) ([]string, error) {
	var out []string
	// The planner checks that a checkpoint is the record's own (campaign,
	// version, offset) before it resumes from it; one at another offset is
	// not resumed from, and moving back loses nothing.
	if ck, ok := decodePlannerCheckpoint(meta); ok && ck.Offset == committed {
		state := fmt.Sprintf("mid-plan after %d chunks", ck.Chunks)
		if ck.Final {
			state = "planned, its MySQL row maybe not written yet"
		}
		out = append(out, fmt.Sprintf("%s/%d: the group is at %d, campaign %s (version %d) at offset %d, %s: its checkpoint is this commit's metadata, "+
			"and moved back the planner would plan the campaign again from its start, shifting devices between batches (lost or sent twice)",
			r.topic, p, committed, ck.Campaign, ck.Version, ck.Offset, state))
	}
	if h, ok := horizon[p]; ok && target < h {
		// Transaction markers below the horizon carry the time of their
		// commit; only records count.
		old, err := r.hasRecords(ctx, p, target, h)
		if err != nil {
			return nil, err
		}
		if old {
			out = append(out, fmt.Sprintf("%s/%d: offsets %d to %d are older than %s (%d days): %s",
				r.topic, p, target, h-1, r.now.Add(-progressRetention).UTC().Format(time.RFC3339), int(progressRetention/(24*time.Hour)), r.retentionRisk))
		}
	}
	return out, nil
}

// planMoves returns each partition's move; problems are moves refused
// outright, hazards those -force allows.
func (r replay) planMoves(ctx context.Context, from string, fromAt time.Time, to string, toAt time.Time) (plan []partitionPlan, problems, hazards []string, err error) {
	members, err := r.activeMembers(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(members) > 0 {
		return nil, nil, nil, fmt.Errorf("group %s has %d active members (%s): stop the stage (scale it to 0) before rewinding it",
			r.group, len(members), strings.Join(members, ", "))
	}
	fromName, toName := from, to
	if !fromAt.IsZero() {
		fromName = "time"
	}
	if !toAt.IsZero() {
		toName = "time"
	}
	starts, err := r.offsetsAt(ctx, fromName, fromAt)
	if err != nil {
		return nil, nil, nil, err
	}
	ends, err := r.offsetsAt(ctx, toName, toAt)
	if err != nil {
		return nil, nil, nil, err
	}
	// horizon: per partition, the first offset the dispatcher still knows
	// the batches of.
	var horizon map[int32]int64
	if r.retentionRisk != "" {
		if horizon, err = r.offsetsAt(ctx, "time", r.now.Add(-progressRetention)); err != nil {
			return nil, nil, nil, err
		}
	}
	fetched, err := r.adm.FetchOffsetsForTopics(ctx, r.group, r.topic)
	if err == nil {
		err = fetched.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		fetched, err = nil, nil // no offsets: reported below
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("fetch offsets of group %s: %w", r.group, err)
	}
	anyCommitted := false
	partitions := make([]int32, 0, len(starts))
	for p := range starts {
		partitions = append(partitions, p)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	for _, p := range partitions {
		o, ok := fetched.Lookup(r.topic, p)
		if !ok || o.At < 0 {
			// Every stage starts a partition it has no offset for at the
			// partition's start, which re-runs the range already.
			plan = append(plan, partitionPlan{partition: p, committed: -1, target: -1, leaderEpoch: -1})
			continue
		}
		anyCommitted = true
		target, end := starts[p], ends[p]
		// On a topic written in transactions (the planner's batches), a
		// group past the last record of a transaction stands after its
		// commit marker, which has a timestamp of its own; offsets between
		// the group and the range that hold only markers and aborted
		// records are nothing to skip and nothing to re-run.
		var lo, hi int64
		switch {
		case o.At < target:
			lo, hi = o.At, target
		case o.At > end:
			lo, hi = end, o.At
		}
		if hi > lo {
			has, err := r.hasRecords(ctx, p, lo, hi)
			if err != nil {
				return nil, nil, nil, err
			}
			if !has && o.At < target {
				target = o.At
			}
			if !has && o.At > end {
				end = o.At
			}
		}
		switch {
		case o.At < target:
			problems = append(problems, fmt.Sprintf("%s/%d: the group is at %d, before the range start %d: moving it would skip %d records it has not processed",
				r.topic, p, o.At, target, target-o.At))
		case o.At > end:
			problems = append(problems, fmt.Sprintf("%s/%d: the group is at %d, after the range end %d: it would also re-run %d records past the range (use -to end)",
				r.topic, p, o.At, end, o.At-end))
		default:
			plan = append(plan, partitionPlan{partition: p, committed: o.At, target: target, leaderEpoch: -1})
			if target != o.At {
				h, err := r.hazards(ctx, p, o.At, target, o.Metadata, horizon)
				if err != nil {
					return nil, nil, nil, err
				}
				hazards = append(hazards, h...)
			}
		}
	}
	if !anyCommitted {
		return nil, nil, nil, fmt.Errorf("group %s has no committed offsets on %s: nothing to rewind (stage groups are <kafka.group_prefix>-<stage>, e.g. pushlane-feedback)", r.group, r.topic)
	}
	return plan, problems, hazards, nil
}

func (r replay) commit(ctx context.Context, plan []partitionPlan) error {
	offsets := kadm.Offsets{}
	for _, p := range plan {
		// A partition already at its target keeps its commit as it is:
		// committing the same offset again would drop the commit's
		// metadata, which is the planner's checkpoint of the campaign
		// in progress there (the campaign would be planned again from
		// its start). A partition that moves back loses it: it belongs
		// to the record at the old offset, and no commit can carry it
		// to that record past the others; plan refuses such a move
		// without -force.
		if p.target != p.committed {
			offsets.AddOffset(r.topic, p.partition, p.target, p.leaderEpoch)
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	resp, err := r.adm.CommitOffsets(ctx, r.group, offsets)
	if err != nil {
		return fmt.Errorf("commit offsets of %s: %w", r.group, err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("commit offsets of %s (a member may have joined meanwhile): %w", r.group, err)
	}
	return nil
}
