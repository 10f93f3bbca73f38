package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pushlane/pushlane/pipeline/feedback"
	"github.com/pushlane/pushlane/schemas"
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
otherwise from the devices that have results.

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
		if err := feedback.ReadRows(f, acc); err != nil {
			return feedback.CampaignSummary{}, fmt.Errorf("rows file %s: %w", rowsFile, err)
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
		name:    "status",
		args:    "<campaign>",
		summary: "Show a campaign's live progress from the results topic",
		details: `
Reads the results topic (read_committed, from the start) and counts the campaign's
distinct results per outcome, so it works with Kafka alone, while the campaign runs.
Planned comes from the planner's MySQL campaigns table when mysql.dsn is set.
With -watch it refreshes every -interval until interrupted or -timeout passes
(-timeout 0 waits forever). "pushctl stats" gives the analytics summary from ClickHouse.`,
		examples: []string{
			"pushctl -config pushlane.yaml status spring-sale",
			"pushctl -config pushlane.yaml -timeout 0 status -watch spring-sale",
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
				for {
					s, err := c.liveSummary(ctx, args[0])
					if err != nil {
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

// liveSummary counts the campaign's results on the results topic.
func (c *cli) liveSummary(ctx context.Context, campaign string) (feedback.CampaignSummary, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return feedback.CampaignSummary{}, err
	}
	recs, err := c.readTopic(ctx, cfg, cfg.Kafka.Topics.Results.Name, nil)
	if err != nil {
		return feedback.CampaignSummary{}, err
	}
	acc := feedback.NewAccumulator()
	rows := make([]feedback.Row, 0, 1024)
	malformed := 0
	for _, r := range recs {
		res, err := schemas.DecodeResult(r.Value)
		if err != nil {
			malformed++ // feedback dead-letters these; status only counts them
			continue
		}
		if res.CampaignID != campaign {
			continue
		}
		rows = append(rows, feedback.RowFromResult(res))
	}
	if err := acc.Write(ctx, rows); err != nil {
		return feedback.CampaignSummary{}, err
	}
	s, err := acc.Summary(campaign)
	if err != nil {
		return s, err
	}
	if malformed > 0 {
		fmt.Fprintf(c.stderr, "pushctl status: %d malformed result records skipped (see pushctl dlq list)\n", malformed)
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
