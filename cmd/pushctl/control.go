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

Before writing, pushctl reads the campaign's current state from that topic: a
cancelled campaign stays cancelled (pause and resume are refused, exit 1), and an
action that is already the current state is reported and not written again.`, action),
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

// latestControl reads the control topic and returns the latest event of
// campaign id, or nil; a cancel, once written, is the campaign's state for
// good. The topic is compacted (a campaign's latest pause or resume, and its
// cancel), so reading it whole is cheap.
func (c *cli) latestControl(ctx context.Context, cfg *config.Config, topic, id string) (*schemas.CampaignControl, error) {
	recs, err := c.readTopic(ctx, cfg, topic, nil)
	if err != nil {
		return nil, fmt.Errorf("read the campaign's state from %s: %w", topic, err)
	}
	var latest, cancel *schemas.CampaignControl
	var latestRec *kgo.Record
	cancelKey := control.Key(schemas.CampaignControl{CampaignID: id, Action: schemas.ControlCancel})
	for _, r := range recs {
		if k := string(r.Key); (k != id && k != cancelKey) || r.Value == nil {
			continue
		}
		ctl, err := schemas.DecodeCampaignControl(r.Value)
		if err != nil || ctl.CampaignID != id {
			continue // the stages dead-letter it; it is not a state
		}
		// Cancel is final, whatever came after it (the stages ignore it).
		if ctl.Action == schemas.ControlCancel && cancel == nil {
			cancel = ctl
		}
		// Offsets order events within a partition; the key fixes the
		// partition, but compare times too in case partitions were added.
		if latest == nil || (r.Partition == latestRec.Partition && r.Offset > latestRec.Offset) ||
			(r.Partition != latestRec.Partition && ctl.At.After(latest.At)) {
			latest, latestRec = ctl, r
		}
	}
	if cancel != nil {
		return cancel, nil
	}
	return latest, nil
}
