package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

// BenchmarkEndToEnd is the headline benchmark (scripts/bench-e2e runs it):
// one campaign to E2E_BENCH_DEVICES devices (default 1,000,000) through the
// real stack on this machine, timed from publishing to the last result in
// ClickHouse. It reports sends per second, p99 lateness, peak RSS and CPU
// seconds of every stage and service, and duplicates and losses from the
// simulators' per-token counts; then it measures the simulators' own
// capacity with h2load, the ceiling. With E2E_BENCH_OUT set it writes every
// figure there as JSON. Run it with -benchtime 1x.
func BenchmarkEndToEnd(b *testing.B) {
	if b.N != 1 {
		b.Fatalf("run with -benchtime 1x (b.N = %d): one campaign is one measurement", b.N)
	}
	n := 1_000_000
	if v := os.Getenv("E2E_BENCH_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("E2E_BENCH_DEVICES=%q: want a number of at least 1000", v)
		}
	}
	const app = "bench"
	shared := devices(b)
	seedStart := time.Now()
	pop := shared.seed(b, fleetApp{Name: app, Devices: n, Suspects: 10})
	seedTime := time.Since(seedStart)

	// The default deployment: docs/config.md's partition counts and
	// feedback settings, one instance of each stage.
	p := newPipeline(b, spec{Apps: []string{app}, CampaignPartitions: 6, DelayPartitions: 6, ReadyPartitions: 12, ResultsPartitions: 12,
		Tune: func(doc map[string]any) { delete(doc, "feedback") }})
	procs := p.StartAll()
	sims := p.Sims[app]
	w := watchAccepts(b, sims, 10*time.Millisecond)

	services := stackPIDs(b)
	cpu0 := map[string]time.Duration{}
	for name, pid := range services {
		cpu0[name], _ = testenv.ProcCPU(pid)
	}
	for _, pr := range procs {
		cpu0[pr.Stage] = pr.Stats().CPU
	}
	self, _ := testenv.ProcCPU(os.Getpid())
	my0 := mariadbCounters(b, shared)

	c := campaign("bench-"+p.Prefix, app, time.Time{})
	b.ResetTimer()
	published := p.Publish(c)
	done := p.WaitFinal(c.ID, len(pop.Devices), 20*time.Minute)
	b.StopTimer()
	w.Stop()

	r := benchResult{
		Devices: n, Live: pop.count(kindLive), Dead: pop.count(kindDead), Suspect: pop.count(kindSuspect),
		SeedSeconds:  seedTime.Seconds(),
		TotalSeconds: done.Sub(published).Seconds(),
		CPUSeconds:   map[string]float64{}, PeakRSSMiB: map[string]float64{},
		Date: time.Now().UTC().Format("2006-01-02"), Machine: machine(), Go: goVersion(),
	}
	first, last := w.First(), w.Last()
	r.FirstSendSeconds = first.Sub(published).Seconds()
	r.LastSendSeconds = last.At.Sub(published).Seconds()
	if d := last.At.Sub(first).Seconds(); d > 0 {
		r.SendPhasePerSecond = float64(last.Accepted) / d
	}
	r.EndToEndPerSecond = float64(n) / r.TotalSeconds
	for name, pid := range services {
		c1, err := testenv.ProcCPU(pid)
		if err == nil {
			r.CPUSeconds[name] = (c1 - cpu0[name]).Seconds()
		}
	}
	for _, pr := range procs {
		st := pr.Stats()
		r.CPUSeconds[pr.Stage] = (st.CPU - cpu0[pr.Stage]).Seconds()
		r.PeakRSSMiB[pr.Stage] = float64(st.PeakRSSKiB) / 1024
	}
	my1 := mariadbCounters(b, shared)
	r.MariaDBStatements = map[string]int64{}
	for k, v := range my1 {
		if d := v - my0[k]; d > 0 {
			r.MariaDBStatements[k] = d
		}
	}
	self1, _ := testenv.ProcCPU(os.Getpid())
	r.CPUSeconds["simulators (test process)"] = (self1 - self).Seconds()

	tl := sims.tally(pop)
	r.Lost, r.Duplicates = len(tl.Lost), tl.DuplicateSends
	r.Accepted = tl.TotalAccepted
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := p.CH.QueryRow(ctx, fmt.Sprintf(`SELECT quantileExact(0.5)(lateness_ms), quantileExact(0.99)(lateness_ms), max(lateness_ms)
		FROM (SELECT result_id, any(lateness_ms) AS lateness_ms, any(outcome) AS outcome FROM %s.results WHERE campaign_id = ? GROUP BY result_id)
		WHERE outcome NOT IN ('invalid_token', 'cancelled', 'expired')`, p.CHDB), c.ID).Scan(&r.LatenessP50Ms, &r.LatenessP99Ms, &r.LatenessMaxMs)
	cancel()
	if err != nil {
		b.Errorf("clickhouse: lateness: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	var started, finished time.Time
	if err := shared.db.QueryRowContext(ctx, `SELECT started_at, finished_at FROM campaigns WHERE id = ?`, c.ID).Scan(&started, &finished); err != nil {
		b.Errorf("mysql: the planner's record of %s: %v", c.ID, err)
	}
	cancel()
	r.PlanSeconds = finished.Sub(started).Seconds()
	outs := outcomesOf(b, p, c.ID)
	r.Delivered = outs[schemas.OutcomeDelivered]

	// The ceiling: h2load against the same simulators, the stages idle.
	r.H2loadAPNs, r.H2loadFCM = h2loadCeilings(b, sims, 100_000)
	ios, android := 0, 0
	for _, d := range pop.Devices {
		if d.Kind != kindLive {
			continue
		}
		if d.Platform == schemas.PlatformIOS {
			ios++
		} else {
			android++
		}
	}
	if r.H2loadAPNs > 0 && r.H2loadFCM > 0 {
		// The mix's ceiling: the time the simulators need for these sends.
		r.CeilingPerSecond = float64(ios+android) / (float64(ios)/r.H2loadAPNs + float64(android)/r.H2loadFCM)
		r.ShareOfCeiling = r.SendPhasePerSecond / r.CeilingPerSecond
	}

	b.ReportMetric(r.TotalSeconds, "s/campaign")
	b.ReportMetric(r.EndToEndPerSecond, "devices/s")
	b.ReportMetric(r.SendPhasePerSecond, "sends/s")
	b.ReportMetric(r.LatenessP99Ms, "p99-lateness-ms")
	b.ReportMetric(float64(r.Duplicates), "duplicates")
	b.ReportMetric(float64(r.Lost), "lost")
	out, _ := json.MarshalIndent(r, "", "  ")
	b.Logf("result:\n%s", out)
	if path := os.Getenv("E2E_BENCH_OUT"); path != "" {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			b.Error(err)
		}
	}
	if r.Lost != 0 || r.Duplicates != 0 || len(tl.NotLiveAccepted) != 0 {
		b.Errorf("%d lost, %d duplicate sends, %d non-live tokens accepted: want 0, 0, 0", r.Lost, r.Duplicates, len(tl.NotLiveAccepted))
	}
	if r.Delivered != uint64(r.Live) {
		b.Errorf("clickhouse: %d delivered, want %d", r.Delivered, r.Live)
	}
}

// benchResult is what BenchmarkEndToEnd measured.
type benchResult struct {
	Devices, Live, Dead, Suspect int
	Date, Machine, Go            string
	SeedSeconds                  float64
	// PlanSeconds is the planner's own record: started_at to finished_at.
	PlanSeconds float64
	// From publishing: the first and last send the simulators accepted,
	// and the moment ClickHouse held a final result for every device.
	FirstSendSeconds, LastSendSeconds, TotalSeconds float64
	// Devices over TotalSeconds; accepted sends over the send phase.
	EndToEndPerSecond, SendPhasePerSecond       float64
	LatenessP50Ms, LatenessP99Ms, LatenessMaxMs float64
	Accepted                                    int64
	Delivered                                   uint64
	Lost, Duplicates                            int
	// CPU seconds during the campaign, by stage and service; peak RSS.
	CPUSeconds map[string]float64
	PeakRSSMiB map[string]float64
	// MariaDB's statement and row counters during the campaign (whole
	// server, SHOW GLOBAL STATUS), to see what its CPU seconds went to.
	MariaDBStatements map[string]int64
	// h2load against the same simulators (requests/s), and the ceiling of
	// this campaign's APNs/FCM mix.
	H2loadAPNs, H2loadFCM, CeilingPerSecond, ShareOfCeiling float64
}

// mariadbCounters reads the server's statement and InnoDB row counters.
func mariadbCounters(t testing.TB, s *sharedDevices) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_select', 'Com_insert', 'Com_update', 'Com_delete',
		'Com_replace', 'Com_commit', 'Questions', 'Innodb_rows_read', 'Innodb_rows_inserted', 'Innodb_rows_updated', 'Innodb_rows_deleted',
		'Innodb_data_fsyncs', 'Innodb_os_log_written')`)
	if err != nil {
		t.Logf("e2e: mariadb status: %v", err)
		return nil
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if rows.Scan(&k, &v) == nil {
			out[k] = v
		}
	}
	return out
}

// stackPIDs returns the pids of Kafka, MariaDB and ClickHouse from
// `deploy/local/stack status all`.
func stackPIDs(t testing.TB) map[string]int {
	t.Helper()
	path := os.Getenv(testenv.EnvStackCtl)
	if path == "" {
		return nil
	}
	out, err := exec.Command(path, "status", "all").Output()
	if err != nil {
		t.Logf("e2e: %s status all: %v", path, err)
	}
	pids := map[string]int{}
	re := regexp.MustCompile(`(?m)^(\w+): running, pid (\d+)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		pid, _ := strconv.Atoi(m[2])
		pids[m[1]] = pid
	}
	return pids
}

// h2loadCeilings runs h2load against the APNs and the FCM simulator with
// valid credentials and returns their requests per second.
func h2loadCeilings(t testing.TB, s *appSims, n int) (apns, fcm float64) {
	t.Helper()
	if _, err := exec.LookPath("h2load"); err != nil {
		t.Errorf("e2e: h2load not found (apt-get install -y nghttp2-client): no ceiling")
		return 0, 0
	}
	dir := t.TempDir()
	apnsBody := filepath.Join(dir, "apns.json")
	fcmBody := filepath.Join(dir, "fcm.json")
	os.WriteFile(apnsBody, []byte(`{"aps":{"alert":{"title":"Spring sale","body":"Everything 20% off until Sunday."},"badge":1,"sound":"default"},"deeplink":"shop://sale/spring"}`), 0o644)
	fcmToken := "f" + strings.Repeat("7", 151)
	os.WriteFile(fcmBody, []byte(`{"message":{"token":"`+fcmToken+`","android":{"priority":"high","ttl":"3600s"},"data":{"deeplink":"shop://sale/spring"},"notification":{"title":"Spring sale","body":"Everything 20% off until Sunday."}}}`), 0o644)

	jwt, err := s.Key.JWT(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	apns = h2load(t, n, apnsBody, s.APNs.URL()+"/3/device/"+strings.Repeat("a", 64),
		"authorization: bearer "+jwt, "apns-topic: "+bundleID, "apns-push-type: alert", "apns-priority: 10")
	at, err := s.FCM.IssueAccessToken(s.ClientEmail)
	if err != nil {
		t.Fatal(err)
	}
	fcm = h2load(t, n, fcmBody, s.FCM.URL()+"/v1/projects/"+s.Project+"/messages:send",
		"authorization: Bearer "+at, "content-type: application/json")
	return apns, fcm
}

var h2loadRate = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)

func h2load(t testing.TB, n int, body, url string, headers ...string) float64 {
	t.Helper()
	args := []string{"-n", strconv.Itoa(n), "-c", "2", "-m", "100", "-t", "1", "-d", body}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command("h2load", append(args, url)...).CombinedOutput()
	m := h2loadRate.FindSubmatch(out)
	if err != nil || m == nil || !strings.Contains(string(out), fmt.Sprintf("%d succeeded", n)) {
		t.Errorf("e2e: h2load %s: %v\n%s", url, err, out)
		return 0
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	return rate
}

func machine() string {
	out, _ := exec.Command("lscpu").Output()
	model := ""
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Model name:"); ok {
			model = strings.TrimSpace(v)
		}
	}
	nproc, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s, %s cores", model, strings.TrimSpace(string(nproc)))
}

func goVersion() string {
	out, _ := exec.Command("go", "env", "GOVERSION").Output()
	return strings.TrimSpace(string(out))
}
