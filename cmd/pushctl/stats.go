package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/feedback"
)

func statsCommand() *command {
	return &command{
		name:    "stats",
		args:    "<campaign>",
		summary: "Print a campaign's delivery summary from ClickHouse (or a demo rows file)",
		details: `
Prints planned, sent, delivered, token-dead, suspect, retried, failed, expired and
cancelled counts with p50/p99 provider latency and lateness against send-at. Every
count is of distinct result ids, so a replayed results topic does not change it.
Planned comes from the planner's MySQL campaigns table when mysql.dsn is set,
otherwise from the devices that have results; with it, so do the devices the
planner left out because they would be due at or after expires_at, which have
no result ("expired at planning").

Reads ClickHouse (clickhouse.addr); -rows-file reads the JSON-lines analytics file
that the embedded demo and "feedback -rows-file" write instead.`,
		examples: []string{
			"pushctl -config pushlane.yaml stats spring-sale",
			"pushctl stats -json spring-sale | jq .Delivered",
			"pushctl stats -rows-file pushlane-results.jsonl demo-campaign",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			rowsFile := fs.String("rows-file", "", "read analytics rows from this JSON-lines `file` instead of ClickHouse")
			asJSON := fs.Bool("json", false, "print the summary as JSON")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one campaign id")
				}
				s, err := c.campaignSummary(ctx, args[0], *rowsFile)
				if err != nil {
					return err
				}
				return c.printSummary(s, *asJSON)
			}
		},
	}
}

func (c *cli) campaignSummary(ctx context.Context, campaign, rowsFile string) (feedback.CampaignSummary, error) {
	if rowsFile != "" {
		f, err := os.Open(rowsFile)
		if err != nil {
			return feedback.CampaignSummary{}, fmt.Errorf("rows file: %w", err)
		}
		defer f.Close()
		acc := feedback.NewAccumulator()
		st, err := feedback.ReadRowsFrom(f, acc)
		if err != nil {
			return feedback.CampaignSummary{}, fmt.Errorf("rows file %s: %w", rowsFile, err)
		}
		if st.Torn > 0 {
			// A writer killed mid-row, or one still writing: the rows of
			// that flush are written again (or are being written).
			fmt.Fprintf(c.stderr, "pushctl stats: rows file %s: %d torn rows skipped (lines %v)\n", rowsFile, st.Torn, st.TornLines)
		}
		return acc.Summary(campaign)
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return feedback.CampaignSummary{}, err
	}
	if err := cfg.Require("clickhouse.addr"); err != nil {
		return feedback.CampaignSummary{}, &exitError{code: exitUsage, err: fmt.Errorf("%w (or use -rows-file)", err)}
	}
	conn, err := feedback.OpenClickHouse(cfg.ClickHouse)
	if err != nil {
		return feedback.CampaignSummary{}, fmt.Errorf("clickhouse: %w", err)
	}
	defer conn.Close()
	s, err := feedback.Summary(ctx, conn, cfg.ClickHouse.Database, campaign)
	if err != nil {
		return s, err
	}
	if cfg.MySQL.DSN != "" {
		db, err := feedback.OpenMySQL(cfg.MySQL)
		if err != nil {
			return s, fmt.Errorf("mysql: %w", err)
		}
		defer db.Close()
		if err := s.AddPlanned(ctx, db); err != nil {
			return s, fmt.Errorf("planned devices from mysql: %w", err)
		}
	}
	return s, nil
}

func (c *cli) printSummary(s feedback.CampaignSummary, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return feedback.WriteSummary(c.stdout, s)
}

func statusCommand() *command {
	return &command{
		name: "status",
		args: "<campaign>",
		// Reading a results topic from its start takes as long as the
		// topic is long: a week of a million-device campaign a day passed
		// the default 30 s.
		unbounded: true,
		summary:   "Show a campaign's live progress from the results topic",
		details: `
Reads the results topic (read_committed, from the start) and counts the campaign's
distinct results per outcome, so it works with Kafka alone, while the campaign runs.
Planned comes from the planner's MySQL campaigns table when mysql.dsn is set.
The topic is streamed, not held in memory. With -watch it refreshes every -interval,
reading only the records written since the last refresh, until interrupted. It has no
time limit unless -timeout is given (reading a long results topic from its start takes
its time); a campaign without results yet shows zeros.
"pushctl stats" gives the analytics summary from ClickHouse.`,
		examples: []string{
			"pushctl -config pushlane.yaml status spring-sale",
			"pushctl -config pushlane.yaml status -watch spring-sale",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			watch := fs.Bool("watch", false, "refresh until interrupted")
			interval := fs.Duration("interval", 2*time.Second, "refresh `interval` with -watch")
			asJSON := fs.Bool("json", false, "print the summary as JSON")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one campaign id")
				}
				if *interval <= 0 {
					return usagef("-interval must be positive")
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				tally := newResultsTally(args[0])
				var db *sql.DB
				if cfg.MySQL.DSN != "" {
					if db, err = feedback.OpenMySQL(cfg.MySQL); err != nil {
						return fmt.Errorf("mysql: %w", err)
					}
					defer db.Close()
				}
				for shown := false; ; shown = true {
					s, err := c.liveSummary(ctx, cfg, tally, db, *watch)
					if err != nil {
						if *watch && shown && ctx.Err() != nil {
							return nil // the timeout or the interrupt came during a refresh
						}
						return err
					}
					if *watch && !*asJSON {
						fmt.Fprintf(c.stdout, "--- %s\n", c.now().UTC().Format(time.RFC3339))
					}
					if err := c.printSummary(s, *asJSON); err != nil {
						return err
					}
					if !*watch {
						return nil
					}
					select {
					case <-ctx.Done():
						return nil // the watch ends with the timeout or the interrupt
					case <-time.After(*interval):
					}
				}
			}
		},
	}
}

// resultsTally counts one campaign's results from the results topic. It
// keeps where it stopped in each partition, so a -watch refresh reads only
// the records written since, and the campaign's distinct results, so a
// replayed topic or a refresh that read some records twice counts each once.
type resultsTally struct {
	campaign  string
	acc       *feedback.Accumulator
	next      map[int32]int64 // partition → first offset not yet read
	malformed int
}

func newResultsTally(campaign string) *resultsTally {
	return &resultsTally{campaign: campaign, acc: feedback.NewAccumulator(), next: map[int32]int64{}}
}

// read adds the results written since the last read; it returns how many
// malformed records it skipped on the way.
func (t *resultsTally) read(ctx context.Context, c *cli, cfg *config.Config) (malformed int, err error) {
	topic := cfg.Kafka.Topics.Results.Name
	ranges, err := c.partitionRanges(ctx, cfg, topic)
	if err != nil {
		return 0, err
	}
	for p, r := range ranges {
		if n, ok := t.next[p]; ok && n > r.start && n <= r.end {
			ranges[p] = offsetRange{start: n, end: r.end}
		}
	}
	var werr error
	if err := c.scanTopic(ctx, cfg, topic, ranges, func(r *kgo.Record) bool {
		res, err := feedback.DecodeResult(r.Value)
		if err != nil {
			malformed++ // feedback dead-letters these; status only counts them
			return true
		}
		if res.CampaignID != t.campaign {
			return true
		}
		werr = t.acc.Write(ctx, []feedback.Row{feedback.RowFromResult(res)})
		return werr == nil
	}); err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	// Only a read that reached every end moves the marks: one cut short is
	// read again, which the distinct count absorbs.
	for p, r := range ranges {
		t.next[p] = r.end
	}
	t.malformed += malformed
	return malformed, nil
}

// liveSummary reads what the results topic gained since the last call into
// tally and summarises the campaign; planned comes from db when given. When
// waiting (-watch), a campaign without results yet is all zeros.
func (c *cli) liveSummary(ctx context.Context, cfg *config.Config, tally *resultsTally, db *sql.DB, waiting bool) (feedback.CampaignSummary, error) {
	malformed, err := tally.read(ctx, c, cfg)
	if err != nil {
		return feedback.CampaignSummary{}, err
	}
	if malformed > 0 {
		fmt.Fprintf(c.stderr, "pushctl status: %d malformed result records skipped (see pushctl dlq list)\n", malformed)
	}
	s, err := tally.acc.Summary(tally.campaign)
	if errors.Is(err, feedback.ErrNoResults) && waiting {
		// A watch started before the first send shows zeros, not an end.
		s, err = feedback.CampaignSummary{CampaignID: tally.campaign, PlannedSource: "results"}, nil
	}
	if err != nil {
		return s, err
	}
	if db != nil {
		if err := s.AddPlanned(ctx, db); err != nil {
			return s, fmt.Errorf("planned devices from mysql: %w", err)
		}
	}
	return s, nil
}
