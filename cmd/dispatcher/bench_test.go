package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/schemas"
)

// The benchmarks here are run by scripts/bench-dispatcher and
// scripts/bench-lateness (go test -bench, never by go test ./...). They use
// the real Kafka and MariaDB of deploy/local. Nothing is asserted about
// speed; correctness (every device once) is.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// procStat returns a process's CPU seconds (utime+stime) and peak RSS in
// bytes, from /proc (zeros if the process is gone).
func procStat(pid int) (cpu float64, hwm int64) {
	st, err := testenv.ReadProcStats(pid)
	if err != nil {
		return 0, 0
	}
	return st.CPU.Seconds(), st.PeakRSSKiB * 1024
}

type simCounts struct {
	Accepted   int64 `json:"accepted"`
	Duplicates int   `json:"duplicates"`
	Devices    int   `json:"devices"`
}

func adminCounts(b *testing.B, admin, sim string) simCounts {
	resp, err := http.Get(admin + "/" + sim + "/counts")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var c simCounts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkDispatcherThroughput: BENCH_DEVICES devices (default 100,000)
// (FCM's per-project quota lifted to 1M/s)
// of one platform (BENCH_PLATFORM ios → APNs, android → FCM) in batches of
// BENCH_BATCH (1,000) are written to the ready topic first; then the
// dispatcher binary (-mode dispatch) starts, pinned with taskset to
// BENCH_CPU (default 1) with GOMAXPROCS=1, against cmd/pushsim (PUSHSIM_*
// from its pushsim.env). Rate = devices / (last accept − first accept) at
// the simulator; CPU per send from /proc/<pid>/stat over the same window;
// RSS is VmHWM. mid-sends/s is the rate over the middle 80% of the devices
// (from the 10% to the 90% accept, interpolated between polls): the whole
// run also holds the dispatcher's start (joining the group, the first
// fetch, the first acknowledgements of results) and the tail (the last
// batches of the partitions their ids hashed to most).
func BenchmarkDispatcherThroughput(b *testing.B) {
	admin := os.Getenv("PUSHSIM_ADMIN_URL")
	if admin == "" {
		b.Fatal("run through scripts/bench-dispatcher (needs cmd/pushsim's PUSHSIM_* environment)")
	}
	n := envInt("BENCH_DEVICES", 100000)
	per := envInt("BENCH_BATCH", 1000)
	cpuList := os.Getenv("BENCH_CPU")
	if cpuList == "" {
		cpuList = "1"
	}
	platform := os.Getenv("BENCH_PLATFORM")
	sim := map[string]string{schemas.PlatformIOS: "apns", schemas.PlatformAndroid: "fcm"}[platform]
	if sim == "" {
		b.Fatalf("BENCH_PLATFORM must be ios or android, not %q", platform)
	}
	for range b.N {
		s := &stack{t: b, dir: b.TempDir(), prefix: "be" + randomHex(5)}
		providers := map[string]any{
			"apns": map[string]any{"environment": "development", "topic": os.Getenv("PUSHSIM_APNS_TOPIC"),
				"key_file": os.Getenv("PUSHSIM_APNS_KEY"), "key_id": os.Getenv("PUSHSIM_APNS_KEY_ID"), "team_id": os.Getenv("PUSHSIM_APNS_TEAM_ID"),
				"endpoint": os.Getenv("PUSHSIM_APNS_URL"), "ca_file": os.Getenv("PUSHSIM_APNS_CA")},
			"fcm": map[string]any{"project_id": os.Getenv("PUSHSIM_FCM_PROJECT"), "service_account_file": os.Getenv("PUSHSIM_FCM_SERVICE_ACCOUNT"),
				"endpoint": os.Getenv("PUSHSIM_FCM_URL"), "ca_file": os.Getenv("PUSHSIM_FCM_CA")},
		}
		s.build(2, providers, map[string]any{
			"kafka.topics.ready.partitions":   12,
			"kafka.topics.results.partitions": 12,
			"apps.app1.concurrency":           envInt("BENCH_CONCURRENCY", 200),
			// FCM's default quota (600,000 a minute) is 10,000 sends/s:
			// lifted, so the benchmark measures the dispatcher, not the
			// quota bucket.
			"apps.app1.fcm.quota_per_minute": 60_000_000,
			"log.level":                      "info",
		})

		// Ready-topic batches in: written before the dispatcher starts.
		cl := s.cl
		now := time.Now()
		var bs []schemas.Batch
		for i := 0; i < n; i += per {
			bt := s.batch(fmt.Sprintf("bench%06d", i/per), "bench", min(per, n-i), now)
			for j := range bt.Devices {
				bt.Devices[j].Platform = platform
			}
			bs = append(bs, bt)
			v, _ := json.Marshal(bt)
			cl.Produce(context.Background(), delay.BatchRecord(s.ladder.Ready, bt.ID, bt.CampaignID, bt.SendAt, time.Time{}, v), func(_ *kgo.Record, err error) {
				if err != nil {
					b.Errorf("produce: %v", err)
				}
			})
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		resp, err := http.Post(admin+"/"+sim+"/reset", "", nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()

		b.ResetTimer()
		cmd := exec.Command("taskset", "-c", cpuList, dispatcherBinary(b), "-config", s.cfgPath, "-migrate", "-mode", "dispatch")
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		logFile, err := os.Create(s.dir + "/dispatcher.log")
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr, cmd.Stdout = logFile, logFile
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pid := cmd.Process.Pid
		var first, last time.Time
		var cpu0 float64
		mid := passage{marks: []int64{int64(n) / 10, int64(n) * 9 / 10}}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			c := adminCounts(b, admin, sim)
			now := time.Now()
			if c.Accepted > 0 && first.IsZero() {
				first = now
				cpu0, _ = procStat(pid)
			}
			mid.observe(now, c.Accepted)
			if c.Accepted >= int64(n) {
				last = time.Now()
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				b.Fatalf("only %d of %d accepted in 10 minutes; log in %s", c.Accepted, n, s.dir)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cpu1, hwm := procStat(pid)
		b.StopTimer()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()

		c := adminCounts(b, admin, sim)
		if c.Duplicates != 0 || c.Devices != n {
			b.Errorf("simulator: %d devices, %d duplicates; want %d, 0", c.Devices, c.Duplicates, n)
		}
		if rs := s.results(n, 2*time.Minute); len(rs) < n {
			b.Errorf("%d results, want %d", len(rs), n)
		}
		secs := last.Sub(first).Seconds()
		b.ReportMetric(float64(n)/secs, "sends/s")
		b.ReportMetric((cpu1-cpu0)*1e6/float64(n), "cpu-µs/send")
		b.ReportMetric(float64(hwm)/(1<<20), "rss-MB")
		b.ReportMetric(float64(mid.marks[1]-mid.marks[0])/mid.at[1].Sub(mid.at[0]).Seconds(), "mid-sends/s")
	}
}

// passage records when a growing count passed each of marks, interpolated
// linearly between the two polls around it.
type passage struct {
	marks []int64
	at    []time.Time
	prevT time.Time
	prevN int64
}

func (p *passage) observe(t time.Time, n int64) {
	if p.at == nil {
		p.at = make([]time.Time, len(p.marks))
	}
	for i, m := range p.marks {
		if !p.at[i].IsZero() || n < m {
			continue
		}
		p.at[i] = t
		if !p.prevT.IsZero() && n > p.prevN && m > p.prevN {
			p.at[i] = p.prevT.Add(time.Duration(float64(m-p.prevN) / float64(n-p.prevN) * float64(t.Sub(p.prevT))))
		}
	}
	p.prevT, p.prevN = t, n
}

// BenchmarkLateness: BENCH_BATCHES batches (default 10,000) of one device,
// send-ats uniformly random over BENCH_HORIZON (default 10m) from two
// seconds after the start, written in random order to the ladder as the
// planner writes them; the dispatcher binary (-mode all, the default 22
// tiers) sends them to the in-process simulators. Lateness = send start −
// send-at, from each result; an early send is one with negative lateness.
func BenchmarkLateness(b *testing.B) {
	n := envInt("BENCH_BATCHES", 10000)
	horizon, err := time.ParseDuration(os.Getenv("BENCH_HORIZON"))
	if err != nil || horizon <= 0 {
		horizon = 10 * time.Minute
	}
	for range b.N {
		s := newStack(b, 22, map[string]any{"log.level": "info"})
		p := s.start()
		s.warmUp()
		t0 := time.Now().Add(2 * time.Second)
		bs := make([]schemas.Batch, n)
		for i := range bs {
			bs[i] = s.batch(fmt.Sprintf("late%05d", i), "lateness", 1, t0.Add(time.Duration(rand.Int64N(int64(horizon)))))
		}
		rand.Shuffle(n, func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
		written := time.Now()
		for _, bt := range bs {
			v, _ := json.Marshal(bt)
			s.cl.Produce(context.Background(), delay.BatchRecord(s.ladder.Route(bt.SendAt, time.Now()), bt.ID, bt.CampaignID, bt.SendAt, time.Time{}, v), func(_ *kgo.Record, err error) {
				if err != nil {
					b.Errorf("produce: %v", err)
				}
			})
		}
		if err := s.cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		if time.Now().After(t0) {
			b.Fatalf("writing took %v, past the first send-at", time.Since(written))
		}
		rs := withoutWarmUp(s.results(n+4, horizon+3*time.Minute))
		if len(rs) != n {
			b.Fatalf("%d results, want %d", len(rs), n)
		}
		var late []float64
		early := 0
		for _, r := range rs {
			if r.Outcome != schemas.OutcomeDelivered {
				b.Errorf("%s: %s", r.Token, r.Outcome)
			}
			if r.LatenessMs < 0 {
				early++
			}
			late = append(late, r.LatenessMs)
		}
		sort.Float64s(late)
		if d, extra := s.waitAccepted(n, time.Minute, bs...); d != n || extra != 0 {
			b.Errorf("simulators accepted %d devices (+%d), want %d (+0)", d, extra, n)
		}
		_, hwm := procStat(p.cmd.Process.Pid)
		b.ReportMetric(late[len(late)/2], "p50-ms")
		b.ReportMetric(late[len(late)*99/100], "p99-ms")
		b.ReportMetric(late[len(late)-1], "max-ms")
		b.ReportMetric(float64(early), "early")
		b.ReportMetric(float64(hwm)/(1<<20), "rss-MB")
	}
}

// passage interpolates between polls: 100 → 300 over 20 ms passes 250 at
// 15 ms; a mark passed at the first poll is that poll's time.
func TestPassageInterpolates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := passage{marks: []int64{50, 250, 400}}
	p.observe(t0, 100)
	p.observe(t0.Add(20*time.Millisecond), 300)
	if !p.at[0].Equal(t0) {
		t.Errorf("mark 50: %v, want the first poll %v", p.at[0], t0)
	}
	if want := t0.Add(15 * time.Millisecond); !p.at[1].Equal(want) {
		t.Errorf("mark 250: %v, want %v", p.at[1], want)
	}
	if !p.at[2].IsZero() {
		t.Errorf("mark 400 not reached, but passed at %v", p.at[2])
	}
	p.observe(t0.Add(40*time.Millisecond), 300) // no progress
	p.observe(t0.Add(60*time.Millisecond), 500)
	if want := t0.Add(50 * time.Millisecond); !p.at[2].Equal(want) {
		t.Errorf("mark 400: %v, want %v", p.at[2], want)
	}
}
