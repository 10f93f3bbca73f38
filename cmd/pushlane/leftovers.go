package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/pipeline/feedback"
)

// A -real demo runs on topics and consumer groups that outlive it (the
// config fixes their names), so a run that stopped early (Ctrl-C, a
// timeout, a failure) leaves work behind: campaigns not yet planned or half
// planned, batches waiting in the delay tiers or the ready topic, results
// not yet applied. Campaigns are valid for an hour, batches carry their
// tokens, and the seed's tokens are the same every run: the next run would
// send the earlier run's leftovers to its own simulators and its checks
// would count them. So before the stages start, skipLeftovers moves every
// group of the demo's stages to the end of the topics it consumes.

// demoPlannerInstance is the planner's static group instance id (and the
// suffix of its transactional id) in the demo.
const demoPlannerInstance = "demo"

// memberExpiry is how long a member of a stopped run may still be listed
// in its group: the stages' group session timeout (franz-go's default, and
// the planner's). A dynamic member that stops cleanly leaves at once; a
// static one (the planner) and a killed process's stay until then.
const memberExpiry = 45 * time.Second

// defaultGroupWait bounds the wait for the groups to empty.
const defaultGroupWait = memberExpiry + 15*time.Second

// demoGroup is one consumer group of the demo's stages.
type demoGroup struct {
	Stage  string    // the stage, for the output
	What   [2]string // what its topics hold, one and many, for the output
	Name   string    // the group
	Topics []string  // the topics its members consume
	// Instance is the static instance id of the demo's own member, or ""
	// for a dynamic member.
	Instance string
}

// demoGroups lists the consumer groups buildStages' stages join, from the
// same configurations it passes to their constructors. The control view
// reads its topic without a group.
func demoGroups(cfg *config.Config) []demoGroup {
	pc := plannerConfig(cfg)
	dc := delayConfig(cfg)
	ac := auditorConfig(cfg)
	spc := dispatcher.ConfigFrom(cfg)
	fc := feedback.ConfigFrom(cfg)
	return []demoGroup{
		// planner.New names its group <group_prefix>-planner and joins it
		// as the static member Instance, consuming the campaigns topic.
		{Stage: "planner", What: [2]string{"campaign", "campaigns"}, Name: pc.Kafka.GroupPrefix + "-planner", Topics: []string{pc.Kafka.Topics.Campaigns.Name}, Instance: pc.Instance},
		{Stage: "delay", What: [2]string{"delay-tier record", "delay-tier records"}, Name: dc.Group, Topics: dc.Ladder.Tiers, Instance: dc.InstanceID},
		{Stage: "dispatcher", What: [2]string{"ready batch", "ready batches"}, Name: spc.Group, Topics: []string{spc.Ladder.Ready}, Instance: spc.InstanceID},
		{Stage: "feedback", What: [2]string{"result or registration", "results and registrations"}, Name: fc.Group, Topics: []string{fc.ResultsTopic, fc.RegistrationsTopic}},
		{Stage: "control-audit", What: [2]string{"control record", "control records"}, Name: ac.Group, Topics: []string{ac.Topic}},
	}
}

// skipped is what skipLeftovers moved past.
type skipped struct {
	total  int64    // records
	about  bool     // total is an estimate (see countRecords)
	byWhat []string // "2 campaigns (planner)", in demoGroups' order, only non-zero
}

func (s skipped) String() string {
	if s.total == 0 {
		return "leftovers of earlier runs: none"
	}
	about := ""
	if s.about {
		about = "about "
	}
	return fmt.Sprintf("skipped %s%d leftover record(s) of an earlier run, not to be sent or applied again: %s",
		about, s.total, strings.Join(s.byWhat, ", "))
}

// withFormerTiers adds to the delay group's topics the tier topics above
// its ladder's top that exist (a run with more tiers left them), which the
// forwarder reads too (delay.FormerTiers).
func withFormerTiers(ctx context.Context, adm *kadm.Client, groups []demoGroup) ([]demoGroup, error) {
	out := slices.Clone(groups)
	for i, g := range out {
		if g.Stage != "delay" {
			continue
		}
		all, err := adm.ListTopics(ctx)
		if err != nil {
			return nil, fmt.Errorf("kafka: list topics: %w", err)
		}
		former := delay.FormerTiers(delay.Ladder{Tiers: g.Topics}, all.Names())
		extra := make([]string, 0, len(former))
		for name := range former {
			extra = append(extra, name)
		}
		sort.Strings(extra)
		out[i].Topics = append(slices.Clone(g.Topics), extra...)
	}
	return out, nil
}

// errDemoRunning says another run still uses the demo's groups.
var errDemoRunning = errors.New("another demo is running")

// skipLeftovers waits (up to wait) until no member of an earlier run is in
// the groups, then commits, for each group, the end offset (high
// watermark) of every partition it consumes where its committed offset
// (or, without one, the start it would reset to) differs. It counts the
// records it moves past as the stage would have read them (read committed,
// without transaction markers).
func skipLeftovers(ctx context.Context, kopts []kgo.Opt, adm *kadm.Client, groups []demoGroup, wait time.Duration, out io.Writer) (skipped, error) {
	if err := waitGroupsEmpty(ctx, adm, groups, wait, out); err != nil {
		return skipped{}, err
	}
	groups, err := withFormerTiers(ctx, adm, groups)
	if err != nil {
		return skipped{}, err
	}
	var topics []string
	for _, g := range groups {
		topics = append(topics, g.Topics...)
	}
	offs, err := listOffsets(ctx, adm, topics)
	if err != nil {
		return skipped{}, err
	}
	var s skipped
	for _, g := range groups {
		committed, err := adm.FetchOffsets(ctx, g.Name)
		if err == nil {
			err = committed.Error()
		}
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return skipped{}, fmt.Errorf("kafka: committed offsets of group %s: %w", g.Name, err)
		}
		commit := kadm.Offsets{}
		ranges := map[string]map[int32][2]int64{}
		for _, t := range g.Topics {
			for p, end := range offs.end[t] {
				start := offs.start[t][p]
				from := start
				if c, ok := committed.Lookup(t, p); ok && c.At >= 0 {
					from = c.At
				}
				if from == end {
					continue
				}
				// A committed offset past the end (a topic recreated
				// since) is moved too; one before the start reads
				// from the start.
				commit.Add(kadm.Offset{Topic: t, Partition: p, At: end, LeaderEpoch: -1})
				// Records from the last stable offset on belong to a
				// transaction still open, which a stopped planner
				// left: this run's planner aborts it (same
				// transactional id), so they are not leftovers.
				if from, to := max(from, start), offs.stable[t][p]; from < to {
					if ranges[t] == nil {
						ranges[t] = map[int32][2]int64{}
					}
					ranges[t][p] = [2]int64{from, to}
				}
			}
		}
		if len(commit) == 0 {
			continue
		}
		n, exact := countRecords(ctx, kopts, ranges, 15*time.Second)
		// The commit carries no metadata: it also drops the planner's
		// checkpoint of a campaign it had half planned.
		if err := adm.CommitAllOffsets(ctx, g.Name, commit); err != nil {
			if isMembershipErr(err) {
				return skipped{}, fmt.Errorf("kafka: group %s gained a member while this demo was moving it past its leftovers: %w: %v",
					g.Name, errDemoRunning, err)
			}
			return skipped{}, fmt.Errorf("kafka: move group %s past its leftovers: %w", g.Name, err)
		}
		if n > 0 {
			s.total += n
			s.about = s.about || !exact
			what := g.What[1]
			if n == 1 {
				what = g.What[0]
			}
			s.byWhat = append(s.byWhat, fmt.Sprintf("%d %s (%s)", n, what, g.Stage))
		}
	}
	return s, nil
}

// countRecords counts the records a read-committed consumer gets from
// ranges ([from, to) by topic and partition, to at most the last stable
// offset), transaction markers and aborted records excluded. If it cannot
// read them all within bound, it returns the offsets of the ranges instead
// (markers included), and exact false.
func countRecords(ctx context.Context, kopts []kgo.Opt, ranges map[string]map[int32][2]int64, bound time.Duration) (n int64, exact bool) {
	var offsets int64
	start := map[string]map[int32]kgo.Offset{}
	type tp struct {
		t string
		p int32
	}
	open := map[tp]bool{}
	for t, ps := range ranges {
		start[t] = map[int32]kgo.Offset{}
		for p, r := range ps {
			start[t][p] = kgo.NewOffset().At(r[0])
			offsets += r[1] - r[0]
			open[tp{t, p}] = true
		}
	}
	if len(open) == 0 {
		return 0, true
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), kopts...),
		kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers occupy offsets: the last offset of a range written in
		// transactions is one, and seeing it ends the range.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return offsets, false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for len(open) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return offsets, false
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			rg := ranges[r.Topic][r.Partition]
			if !open[k] || r.Offset >= rg[1] {
				return
			}
			if !r.Attrs.IsControl() {
				n++
			}
			if r.Offset >= rg[1]-1 {
				delete(open, k)
				cl.PauseFetchPartitions(map[string][]int32{r.Topic: {r.Partition}})
			}
		})
	}
	return n, true
}

// isMembershipErr reports a commit refused because the group has members.
func isMembershipErr(err error) bool {
	return errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) ||
		errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.FencedInstanceID) ||
		errors.Is(err, kerr.StaleMemberEpoch)
}

// partitionOffsets are the offsets of the demo's topics by topic and
// partition.
type partitionOffsets struct {
	start, stable, end map[string]map[int32]int64
}

// listOffsets lists the start, last stable and end offsets of every
// partition of topics, retrying briefly: topics the demo just created may
// not answer at once.
func listOffsets(ctx context.Context, adm *kadm.Client, topics []string) (partitionOffsets, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var o partitionOffsets
		var err error
		o.end, err = listed(adm.ListEndOffsets(ctx, topics...))
		if err == nil {
			o.start, err = listed(adm.ListStartOffsets(ctx, topics...))
		}
		if err == nil {
			o.stable, err = listed(adm.ListCommittedOffsets(ctx, topics...))
		}
		if err == nil {
			for _, t := range topics {
				if len(o.end[t]) == 0 {
					err = fmt.Errorf("topic %s: no partitions listed", t)
					break
				}
			}
		}
		if err == nil {
			return o, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return o, fmt.Errorf("kafka: list offsets of the demo's topics: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func listed(l kadm.ListedOffsets, err error) (map[string]map[int32]int64, error) {
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		return nil, err
	}
	m := map[string]map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) {
		if m[o.Topic] == nil {
			m[o.Topic] = map[int32]int64{}
		}
		m[o.Topic][o.Partition] = o.Offset
	})
	return m, nil
}

// waitGroupsEmpty returns once no group of groups has a member. The one
// member it removes itself is the demo's own static member (the planner's
// instance "demo") of an earlier run, and only when no group has any other
// member: a running demo always has dynamic members (feedback, dispatcher,
// ...), and this run's planner would replace that member on joining
// anyway. Any other member is waited for, up to wait: a stopped run's
// leave within their session timeout; one still there after that belongs
// to a run that is still going, and the result is errDemoRunning.
func waitGroupsEmpty(ctx context.Context, adm *kadm.Client, groups []demoGroup, wait time.Duration, out io.Writer) error {
	names := make([]string, len(groups))
	byName := map[string]demoGroup{}
	for i, g := range groups {
		names[i] = g.Name
		byName[g.Name] = g
	}
	began := time.Now()
	deadline := began.Add(wait)
	said := false
	removals := map[string]int{}
	for {
		described, err := adm.DescribeGroups(ctx, names...)
		var busy []string  // groups with members other than the demo's own static ones
		var stale []string // groups with only the demo's own static member
		var lastErr error = err
		if err == nil {
			for _, name := range names {
				d, ok := described[name]
				if !ok {
					continue
				}
				if d.Err != nil {
					if !errors.Is(d.Err, kerr.GroupIDNotFound) {
						lastErr = fmt.Errorf("describe group %s: %w", name, d.Err)
					}
					continue
				}
				if len(d.Members) == 0 {
					continue
				}
				own := byName[name].Instance
				var others []string
				for _, m := range d.Members {
					if own != "" && m.InstanceID != nil && *m.InstanceID == own {
						continue
					}
					who := m.ClientID + "@" + strings.TrimPrefix(m.ClientHost, "/")
					if m.InstanceID != nil {
						who += " (static " + *m.InstanceID + ")"
					}
					others = append(others, who)
				}
				if len(others) == 0 && removals[name] >= 3 {
					// Removed and back again: a live planner.
					others = append(others, "(static "+own+", rejoined after removal)")
				}
				if len(others) > 0 {
					sort.Strings(others)
					busy = append(busy, fmt.Sprintf("%s: %d member(s) %s", name, len(others), strings.Join(others, ", ")))
				} else {
					stale = append(stale, name)
				}
			}
		}
		if lastErr == nil && len(busy) == 0 {
			if len(stale) == 0 {
				if said {
					fmt.Fprintf(out, "they left after %s\n", time.Since(began).Round(time.Second))
				}
				return nil
			}
			// Only the demo's own static members, left by an earlier run.
			for _, name := range stale {
				own := byName[name].Instance
				removals[name]++
				resp, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(name).InstanceIDs(own).
					Reason("pushlane demo: a new run replaces an earlier run's member"))
				if err == nil {
					err = resp.Error()
				}
				if errors.Is(err, kerr.UnknownMemberID) {
					continue // it expired meanwhile
				}
				if err != nil {
					lastErr = fmt.Errorf("remove the static member %s of an earlier run from group %s: %w", own, name, err)
					break
				}
				fmt.Fprintf(out, "removed the %s's static member %q of an earlier run from group %s\n", byName[name].Stage, own, name)
			}
			if lastErr == nil {
				continue // describe again: a member may have joined meanwhile
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if len(busy) > 0 {
				return fmt.Errorf("%w against the group prefix of this config: after %s, %s (a stopped run's members leave within %s); stop it, or give this run its own kafka.group_prefix and topic names",
					errDemoRunning, wait.Round(time.Second), strings.Join(busy, "; "), memberExpiry)
			}
			return fmt.Errorf("kafka: the demo's consumer groups: %w", lastErr)
		}
		if !said && len(busy) > 0 {
			said = true
			fmt.Fprintf(out, "waiting up to %s for the members of an earlier run to leave the demo's consumer groups:\n  %s\n",
				wait.Round(time.Second), strings.Join(busy, "\n  "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
