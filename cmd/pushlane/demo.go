package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/pipeline/feedback"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// demoOptions are the demo's flags.
type demoOptions struct {
	Devices    int
	Delayed    time.Duration // second part's delay; 0: one campaign only
	BatchSize  int
	Timeout    time.Duration // for the campaigns to finish
	Real       bool          // run against the services of ConfigPath
	ConfigPath string
	ClickHouse string // ClickHouse address for analytics
	Analytics  string // JSON-lines analytics file (when not ClickHouse)
	Dir        string // work directory; default a new temporary one
	Progress   string // auto, bar, lines, none
	Environ    []string
	// beforePublish, if set, is called once everything runs and before
	// the campaigns are published (tests use it to break a simulator).
	beforePublish func(*embedded.Simulators)
	// afterPublish, if set, is called once the campaigns are published
	// (tests use it to interrupt a run).
	afterPublish func()
	// groupWait bounds the wait of a -real run for an earlier run's
	// members to leave the consumer groups; 0: defaultGroupWait.
	groupWait time.Duration
}

// demoOutcome is what a demo run found.
type demoOutcome struct {
	// Problems lists every check that failed; empty means success.
	Problems []string
	Report   *demoReport
	Pop      *embedded.Population
	// APNsAccepted and FCMAccepted are the simulators' totals.
	APNsAccepted, FCMAccepted int64
}

// infra is where the pipeline runs: embedded or real services.
type infra struct {
	cfg      *config.Config
	db       *sql.DB
	ch       driver.Conn
	sims     *embedded.Simulators
	describe []string
	closers  []func()
}

func (in *infra) close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i]()
	}
}

// runDemo runs the whole demo and returns what it found, whose Problems
// list the things that did not go as promised (empty: every live device
// delivered exactly once and every dead token deactivated), or an error if
// the demo could not run at all.
func runDemo(ctx context.Context, o demoOptions, out io.Writer) (*demoOutcome, error) {
	began := time.Now()
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "pushlane-demo-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "pushlane.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	in := &infra{}
	defer in.close()
	if o.Real {
		err = startReal(ctx, o, dir, log, in)
	} else {
		err = startEmbedded(ctx, o, dir, log, in)
	}
	if err != nil {
		return nil, err
	}
	cfg := in.cfg
	for _, l := range in.describe {
		fmt.Fprintln(out, l)
	}

	kopts, err := pkafka.ClientOpts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(0))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	created, err := pkafka.EnsureTopics(ctx, kadm.NewClient(cl), cfg.Kafka.Topics.ReplicationFactor, pkafka.Layout(cfg))
	if err != nil {
		return nil, err
	}
	log.Info("topics ready", "created", created)
	if o.Real {
		// The topics and groups outlive a run: start past whatever an
		// earlier one left (see skipLeftovers).
		wait := o.groupWait
		if wait <= 0 {
			wait = defaultGroupWait
		}
		sk, err := skipLeftovers(ctx, kopts, kadm.NewClient(cl), demoGroups(cfg), wait, out)
		if err != nil {
			return nil, err
		}
		log.Info("leftovers skipped", "records", sk.total, "estimate", sk.about, "which", sk.byWhat)
		fmt.Fprintln(out, sk)
	}

	seedStart := time.Now()
	pop, err := embedded.Seed(ctx, in.db, embedded.SeedSpec{App: embedded.DemoApp, Devices: o.Devices})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "seeded %d devices of app %q in %.1fs:\n  %d iOS, %d Android; locales %s; %d timezones\n  %d dead tokens, %d suspect\n",
		len(pop.Devices), pop.App, time.Since(seedStart).Seconds(),
		countPlatform(pop, schemas.PlatformIOS), countPlatform(pop, schemas.PlatformAndroid),
		strings.Join(distinct(pop, func(d embedded.Device) string { return d.Locale }), " "),
		len(distinct(pop, func(d embedded.Device) string { return d.Timezone })),
		pop.Count(embedded.KindDead, ""), pop.Count(embedded.KindSuspect, ""))

	// Analytics: the feedback stage writes every row to ClickHouse or to a
	// JSON-lines file, and to an in-memory accumulator the summary is read
	// from, so the summary is feedback's own account of the results.
	fbAcc := feedback.NewAccumulator()
	sinks := feedback.MultiSink{fbAcc}
	var analyticsNote string
	if in.ch != nil {
		chSink, err := feedback.NewClickHouseSink(in.ch, cfg.ClickHouse.Database)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, chSink)
		analyticsNote = fmt.Sprintf("analytics rows: ClickHouse %s, table %s.results", strings.Join(cfg.ClickHouse.Addr, ","), cfg.ClickHouse.Database)
	} else {
		path := o.Analytics
		if path == "" {
			path = filepath.Join(dir, "analytics.jsonl")
		}
		fs, err := feedback.NewFileSink(path)
		if err != nil {
			return nil, err
		}
		defer fs.Close()
		sinks = append(sinks, fs)
		analyticsNote = "analytics rows (JSON lines): " + path
	}

	stages, err := buildStages(cfg, pipelineDeps{DB: in.db, SmallStatements: !o.Real, Sink: sinks, Logger: log})
	if err != nil {
		return nil, err
	}
	run := start(ctx, stages)
	stopped := false
	stopStages := func() error {
		if stopped {
			return nil
		}
		stopped = true
		return run.stop(30 * time.Second)
	}
	defer stopStages()

	parts := demoParts(time.Now(), o.Delayed, o.BatchSize)
	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = p.Campaign.ID
	}
	tr, err := startTracker(ctx, kopts, cfg.Kafka.Topics.Results.Name, ids)
	if err != nil {
		return nil, err
	}
	trCtx, trCancel := context.WithCancel(ctx)
	defer trCancel()
	go tr.run(trCtx)
	if o.beforePublish != nil {
		o.beforePublish(in.sims)
	}
	fmt.Fprintf(out, "published %d campaign(s):\n", len(parts))
	for _, p := range parts {
		if err := publish(ctx, cl, cfg.Kafka.Topics.Campaigns.Name, p.Campaign); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "  %-32s %s\n", p.Campaign.ID, p.Label)
	}
	if o.afterPublish != nil {
		o.afterPublish()
	}

	disp := &display{w: out, terminal: isTerminal(o.Progress), width: terminalWidth(os.Stdout), start: time.Now()}
	fc, adm := feedback.ConfigFrom(cfg), kadm.NewClient(cl)
	fbCommitted := func(ctx context.Context) bool { return feedbackCommitted(ctx, adm, fc.Group, fc.ResultsTopic) }
	waitErr := waitDone(ctx, o, in.db, ids, tr, fbAcc, fbCommitted, run, disp)
	planned, all := plannedSoFar(context.WithoutCancel(ctx), in.db, ids)
	final := tr.snapshot(planned)
	if !all {
		final.Planned, final.PlannedPart = -1, planned
	}
	if o.Progress != "none" {
		disp.finish(final)
	}
	stopErr := stopStages()

	var problems []string
	if waitErr != nil {
		problems = append(problems, waitErr.Error())
	}
	if stopErr != nil {
		problems = append(problems, "stages: "+stopErr.Error())
	}
	// The report is wanted even after an interrupt: it says how far the
	// campaigns got.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	rep, err := report(rctx, in, pop, parts, fbAcc)
	if err != nil {
		return nil, err
	}
	rep.print(out)
	problems = append(problems, rep.problems...)
	fmt.Fprintln(out, analyticsNote)
	fmt.Fprintf(out, "logs: %s   config: %s\n", logPath, in.configFile(dir))
	fmt.Fprintf(out, "done in %.1fs\n", time.Since(began).Seconds())
	return &demoOutcome{Problems: problems, Report: rep, Pop: pop,
		APNsAccepted: in.sims.APNs.Counts().Accepted, FCMAccepted: in.sims.FCM.Counts().Accepted}, nil
}

func (in *infra) configFile(dir string) string {
	p := filepath.Join(dir, "pushlane-demo.yaml")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "(the -config file, with the simulators as app demo)"
}

// startEmbedded brings up the in-process broker, store and simulators and
// generates the configuration for them.
func startEmbedded(ctx context.Context, o demoOptions, dir string, log *slog.Logger, in *infra) error {
	store, err := embedded.StartStore(ctx, embedded.WithoutDeviceIndexes())
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() { _ = store.Close() })
	broker, err := embedded.StartBroker()
	if err != nil {
		return err
	}
	in.closers = append(in.closers, broker.Close)
	sims, err := embedded.StartSimulators(dir, log.With("component", "simulator"))
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() { _ = sims.Close() })
	spec := embedded.ConfigSpec{Brokers: broker.Addrs(), MySQLDSN: store.DSN, App: sims.App}
	if o.ClickHouse != "" {
		spec.ClickHouse = []string{o.ClickHouse}
	}
	cfg, err := embedded.WriteConfig(filepath.Join(dir, "pushlane-demo.yaml"), spec)
	if err != nil {
		return err
	}
	in.cfg, in.db, in.sims = cfg, store.DB, sims
	in.describe = append(in.describe, "pushlane demo, all in this process:",
		"  Kafka (kfake)                 "+strings.Join(broker.Addrs(), ","),
		"  MySQL (go-mysql-server)       "+store.Addr,
		"  APNs simulator                "+sims.APNs.URL(),
		"  FCM simulator                 "+sims.FCM.URL(),
		"  stages                        planner, delay ladder, dispatcher, feedback")
	if err := in.openClickHouse(ctx); err != nil {
		return err
	}
	return nil
}

// startReal connects to the services of the -config file (deploy/local's
// stack or a user's cluster), applies the migrations, and runs the
// simulators in-process as the app "demo".
func startReal(ctx context.Context, o demoOptions, dir string, log *slog.Logger, in *infra) error {
	cfg, err := config.Load(o.ConfigPath, o.Environ)
	if err != nil {
		return err
	}
	if err := cfg.Require("mysql.dsn"); err != nil {
		return err
	}
	if o.ClickHouse != "" {
		cfg.ClickHouse.Addr = []string{o.ClickHouse}
	}
	sims, err := embedded.StartSimulators(dir, log.With("component", "simulator"))
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() { _ = sims.Close() })
	if cfg.Apps == nil {
		cfg.Apps = map[string]config.App{}
	}
	cfg.Apps[embedded.DemoApp] = sims.App
	if err := createDatabase(ctx, cfg.MySQL); err != nil {
		return err
	}
	db, err := feedback.OpenMySQL(cfg.MySQL)
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() { _ = db.Close() })
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := migrate.MySQL(mctx, db); err != nil {
		return err
	}
	in.cfg, in.db, in.sims = cfg, db, sims
	in.describe = append(in.describe, "pushlane demo against real services:",
		"  Kafka                         "+strings.Join(cfg.Kafka.Brokers, ","),
		"  MySQL                         "+cfg.Redacted().MySQL.DSN,
		"  APNs simulator (in process)   "+sims.APNs.URL(),
		"  FCM simulator (in process)    "+sims.FCM.URL(),
		"  stages (in process)           planner, delay ladder, dispatcher, feedback")
	return in.openClickHouse(ctx)
}

// createDatabase creates the DSN's database if it is missing, so the demo
// runs on a server where the user may create databases (deploy/local's).
func createDatabase(ctx context.Context, c config.MySQL) error {
	server, name, err := serverDSN(c.DSN)
	if err != nil {
		return err
	}
	c.DSN = server
	db, err := feedback.OpenMySQL(c)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"`"); err != nil {
		return fmt.Errorf("mysql: create database %s: %w", name, err)
	}
	return nil
}

// serverDSN splits dsn into the same DSN without its database, to connect
// before the database exists, and the database's name.
func serverDSN(dsn string) (server, name string, err error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", "", fmt.Errorf("mysql.dsn: %w", err)
	}
	name = cfg.DBName
	if name == "" {
		return "", "", errors.New("mysql.dsn: names no database")
	}
	if strings.ContainsAny(name, "`") {
		return "", "", fmt.Errorf("mysql.dsn: database name %q contains a backquote", name)
	}
	cfg.DBName = ""
	return cfg.FormatDSN(), name, nil
}

// openClickHouse connects and migrates when analytics go to ClickHouse.
func (in *infra) openClickHouse(ctx context.Context) error {
	if len(in.cfg.ClickHouse.Addr) == 0 {
		return nil
	}
	ch, err := feedback.OpenClickHouse(in.cfg.ClickHouse)
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() { _ = ch.Close() })
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := migrate.ClickHouse(mctx, ch, in.cfg.ClickHouse.Database); err != nil {
		return err
	}
	in.ch = ch
	return nil
}

// plannedSoFar sums the planner's planned devices (and invalid tokens,
// which get a result without being batched) of the campaigns it finished
// planning, and reports whether it finished all of them.
func plannedSoFar(ctx context.Context, db *sql.DB, ids []string) (total int64, all bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all = true
	for _, id := range ids {
		var planned, invalid int64
		err := db.QueryRowContext(ctx, `SELECT planned_devices, invalid_tokens FROM campaigns WHERE id = ? AND version = 1`, id).
			Scan(&planned, &invalid)
		if err != nil {
			all = false
			continue
		}
		total += planned + invalid
	}
	return total, all
}

// waitDone redraws progress until every planned device has a final result
// and feedback has applied every result (in its analytics sink, and
// committed, which it does only after its MySQL changes), or the timeout,
// or a stage fails.
func waitDone(ctx context.Context, o demoOptions, db *sql.DB, ids []string, tr *tracker, fbAcc *feedback.Accumulator,
	fbCommitted func(context.Context) bool, run *running, disp *display) error {
	// The timeout counts from the delayed part's send-at: its devices
	// cannot have results before it.
	deadline := time.NewTimer(o.Delayed + o.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// The embedded store has one connection, which the stages keep busy:
	// ask it in the background so the display never waits for it.
	var plannedNow, plannedPart atomic.Int64 // plannedNow: -1 until every campaign is planned
	plannedNow.Store(-1)
	// Ends with waitDone: the stages drain and the report runs on the
	// store's one connection after it.
	ctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	go func() {
		for ctx.Err() == nil {
			p, all := plannedSoFar(ctx, db, ids)
			if all {
				plannedNow.Store(p)
				return
			}
			plannedPart.Store(p)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	for {
		planned := plannedNow.Load()
		c := tr.snapshot(planned)
		c.PlannedPart = plannedPart.Load()
		if o.Progress != "none" {
			disp.update(c, false)
		}
		if planned >= 0 && int64(c.Final) >= planned && feedbackCaughtUp(tr, fbAcc, ids) && fbCommitted(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			if planned < 0 {
				return fmt.Errorf("interrupted while planning: %d devices have a final result", c.Final)
			}
			return fmt.Errorf("interrupted: %d of %d planned devices have a final result", c.Final, planned)
		case <-run.failed:
			return fmt.Errorf("a stage failed: %v", run.err())
		case <-deadline.C:
			if planned < 0 {
				return fmt.Errorf("timed out %s after the last part was due: the planner did not finish planning %s", o.Timeout, strings.Join(ids, ", "))
			}
			return fmt.Errorf("timed out %s after the last part was due: %d of %d planned devices have a final result", o.Timeout, c.Final, planned)
		case <-tick.C:
		case <-tr.changed:
		}
	}
}

// feedbackCaughtUp reports whether feedback's sink holds every result the
// tracker saw. A flush writes its sink, MySQL and dead letters at once, so
// the sink alone can be ahead of MySQL: feedbackCommitted says when the
// rest is done.
func feedbackCaughtUp(tr *tracker, fbAcc *feedback.Accumulator, ids []string) bool {
	for _, id := range ids {
		want, err := tr.acc.Summary(id)
		if errors.Is(err, feedback.ErrNoResults) {
			continue // an empty audience: nothing to wait for
		}
		if err != nil {
			return false
		}
		got, err := fbAcc.Summary(id)
		if err != nil || got.Results < want.Results {
			return false
		}
	}
	return true
}

func countPlatform(p *embedded.Population, platform string) int {
	n := 0
	for _, d := range p.Devices {
		if d.Platform == platform {
			n++
		}
	}
	return n
}

func distinct(p *embedded.Population, f func(embedded.Device) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range p.Devices {
		if v := f(d); !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

func isTerminal(mode string) bool {
	switch mode {
	case "bar":
		return true
	case "lines", "none":
		return false
	}
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// feedbackCommitted reports whether feedback's group has committed every
// partition of the results topic up to its last stable offset. Feedback
// commits a flush only once its MySQL changes, sink and dead letters are
// all written; before this wait the demo could stop feedback in the middle
// of its last flush's MySQL statements, which the stop's drain then wrote
// again (slow enough, a spurious failure).
func feedbackCommitted(ctx context.Context, adm *kadm.Client, group, topic string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stable, err := listed(adm.ListCommittedOffsets(ctx, topic))
	if err != nil || len(stable[topic]) == 0 {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		// Nothing committed yet: only an empty topic is caught up.
		committed = nil
	case err != nil:
		return false
	}
	for p, end := range stable[topic] {
		if end == 0 {
			continue
		}
		o, ok := committed.Lookup(topic, p)
		if !ok || o.At < end {
			return false
		}
	}
	return true
}
