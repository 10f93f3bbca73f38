package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

func appNames(apps map[string]config.App) []string {
	out := make([]string, 0, len(apps))
	for n := range apps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func controlCommand(action, summary string) *command {
	examples := []string{
		fmt.Sprintf(`pushctl %s spring-sale-2026 -reason "wrong discount in the body"`, action),
		fmt.Sprintf(`pushctl -config /etc/pushlane/pushlane.yaml %s spring-sale-2026`, action),
	}
	return &command{
		name:    action,
		args:    "<campaign id> [-reason TEXT]",
		summary: summary,
		details: fmt.Sprintf(`
Writes a %q control event to the compacted control topic that every planner and
dispatcher reads. A pause or resume is keyed by the campaign id, and the latest of
them is the campaign's state; a cancel is keyed "<campaign id>/cancel", so that
compaction never replaces it with a later pause or resume: once cancelled, a
campaign stays cancelled. Write one by hand (kcat) with those keys.

Before writing, pushctl reads the campaign's current state from that topic as the
stages do: a cancelled campaign stays cancelled (pause and resume are refused, exit
1), and an action that is already the current state is reported and not written
again. A tombstone (a record with no value) forgets what its own key held, as it
does for every stage and as compaction does: on <id> the pause or resume, on
<id>/cancel the cancel. A campaign is retired with one tombstone per key, and one
retired and published again can be cancelled or paused anew.`, action),
		examples: examples,
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			reason := fs.String("reason", "", "why, for the record (shown to operators and in logs)")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one campaign id, got %d arguments", len(args))
				}
				ctl := schemas.CampaignControl{
					SchemaVersion: schemas.SchemaVersion,
					CampaignID:    args[0],
					Action:        action,
					Reason:        *reason,
					At:            c.now().UTC(),
				}
				// Checked here for the exit code of an invalid event;
				// control.Record checks it again when it is written.
				value, err := json.Marshal(ctl)
				if err != nil {
					return err
				}
				if _, err := schemas.DecodeCampaignControl(value); err != nil {
					return invalid(err)
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				topic := cfg.Kafka.Topics.Control.Name
				latest, err := c.latestControl(ctx, cfg, topic, ctl.CampaignID)
				if err != nil {
					return err
				}
				if latest != nil {
					switch {
					case latest.Action == schemas.ControlCancel && action != schemas.ControlCancel:
						return fmt.Errorf("campaign %s was cancelled at %s%s: cancel is final, it cannot be %s",
							ctl.CampaignID, latest.At.Format("2006-01-02T15:04:05Z07:00"), reasonSuffix(latest.Reason), pastTense(action))
					case latest.Action == action:
						fmt.Fprintf(c.stdout, "%s %s: already %s at %s%s; nothing written\n", action, ctl.CampaignID,
							pastTense(action), latest.At.Format("2006-01-02T15:04:05Z07:00"), reasonSuffix(latest.Reason))
						return nil
					}
				} else if action == schemas.ControlResume {
					fmt.Fprintf(c.stdout, "resume %s: not paused; nothing written\n", ctl.CampaignID)
					return nil
				}
				cl, err := c.kafkaClient(cfg)
				if err != nil {
					return err
				}
				defer cl.Close()
				// The record every stage's view reads: keyed, with headers,
				// as control.Publish writes it.
				rec, err := control.Record(topic, ctl)
				if err != nil {
					return err
				}
				res, err := cl.ProduceSync(ctx, rec).First()
				if err != nil {
					return fmt.Errorf("produce %s of %s to %s: %w", action, ctl.CampaignID, topic, err)
				}
				fmt.Fprintf(c.stdout, "%s %s: written to %s/%d@%d\n", action, ctl.CampaignID, res.Topic, res.Partition, res.Offset)
				return nil
			}
		},
	}
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", reason)
}

func pastTense(action string) string {
	return map[string]string{schemas.ControlCancel: "cancelled", schemas.ControlPause: "paused", schemas.ControlResume: "resumed"}[action]
}

// latestControl reads the control topic and returns the event that is
// campaign id's state in the stages' views, or nil when they have none. The
// topic is compacted (a campaign's latest pause or resume, and its cancel),
// so reading it whole is cheap.
func (c *cli) latestControl(ctx context.Context, cfg *config.Config, topic, id string) (*schemas.CampaignControl, error) {
	recs, err := c.readTopic(ctx, cfg, topic, nil)
	if err != nil {
		return nil, fmt.Errorf("read the campaign's state from %s: %w", topic, err)
	}
	return controlState(recs, id), nil
}

// controlState folds recs through control.Campaigns, the fold every
// stage's view applies (pipeline/control/campaigns.go), and returns campaign
// id's state as the event it amounts to, or nil when the views hold none,
// so that pushctl's "already cancelled; nothing written" is never said of a
// campaign the stages have forgotten. A tombstone forgets what its own key
// held: on the campaign key the pause or resume, on the cancel key the
// cancel.
//
// Within a partition the view applies records in offset order. Across
// partitions (kafka.topics.control.partitions above its default of 1, where
// a campaign's two keys may land apart) it applies them in whatever order
// its fetches bring them; the records' timestamps, the order they were
// written in, are the nearest to what a view running then saw.
func controlState(recs []*kgo.Record, id string) *schemas.CampaignControl {
	byPartition := map[int32][]*kgo.Record{}
	var partitions []int32
	for _, r := range recs {
		if r.Attrs.IsControl() {
			continue
		}
		if _, ok := byPartition[r.Partition]; !ok {
			partitions = append(partitions, r.Partition)
		}
		byPartition[r.Partition] = append(byPartition[r.Partition], r)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	cs := control.NewCampaigns()
	for {
		// The partition whose next record was written first; the lower
		// partition on a tie, for a stable answer.
		var next int32 = -1
		for _, p := range partitions {
			if len(byPartition[p]) == 0 {
				continue
			}
			if next < 0 || byPartition[p][0].Timestamp.Before(byPartition[next][0].Timestamp) {
				next = p
			}
		}
		if next < 0 {
			break
		}
		r := byPartition[next][0]
		byPartition[next] = byPartition[next][1:]
		_, _ = cs.Apply(r) // an invalid record: the stages skip it, and the planners' auditor dead-letters it
	}
	st, ok := cs.State(id)
	if !ok {
		return nil
	}
	action := schemas.ControlResume
	switch {
	case st.Cancelled:
		action = schemas.ControlCancel
	case st.Paused:
		action = schemas.ControlPause
	}
	return &schemas.CampaignControl{SchemaVersion: schemas.SchemaVersion, CampaignID: id, Action: action, Reason: st.Reason, At: st.At}
}
