package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/pipeline/delay"
	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// binary is cmd/dispatcher built once for the package's tests, into dir
// (removed by TestMain; empty when DISPATCHER_BIN names a binary).
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

func dispatcherBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv("DISPATCHER_BIN"); p != "" { // built by a bench script
			binary.path = p
			return
		}
		dir, err := os.MkdirTemp("", "dispatcher-bin")
		if err != nil {
			binary.err = err
			return
		}
		binary.dir = dir
		binary.path = filepath.Join(dir, "dispatcher")
		// go test runs in the package directory. GOFLAGS (-race) applies.
		out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

const (
	bundleID   = "dev.pushlane.test"
	fcmProject = "pushlane-test"
	appName    = "app1"
)

// stack is one test's world: its own topics, database, simulators and
// config file for the dispatcher binary.
type stack struct {
	t       testing.TB
	dir     string
	cfg     *config.Config
	cfgPath string
	raw     map[string]any // the config as written
	apns    *apnssim.Server
	fcm     *fcmsim.Server
	cl      *kgo.Client
	ladder  delay.Ladder
	prefix  string // token prefix of this test
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newStack creates the topics (tiers delay tiers), a MySQL database, both
// simulators, and the config file; settings ("dispatcher.chunk_size": 10)
// override its keys.
func newStack(t testing.TB, tiers int, settings map[string]any) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), prefix: "c0de" + randomHex(4)}
	s.build(tiers, s.startSims(), settings)
	return s
}

// startSims starts both simulators in this process and returns the app's
// provider config for them.
func (s *stack) startSims() map[string]any {
	t := s.t
	t.Helper()
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := key.WriteFile(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	s.apns, err = apnssim.New(apnssim.Config{
		Keys: map[string]*ecdsa.PublicKey{key.KeyID: key.Public()}, TeamID: key.TeamID,
		Topics: []string{bundleID}, Environment: "development",
		Record: true, // accept times, for the never-early checks
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apns.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.apns.Close() })
	apnsCA := filepath.Join(s.dir, "apns-ca.pem")
	if err := os.WriteFile(apnsCA, s.apns.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	acct, err := fcmsim.NewTestServiceAccount(fcmProject, "https://127.0.0.1/token")
	if err != nil {
		t.Fatal(err)
	}
	s.fcm, err = fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fcm.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.fcm.Close() })
	var sa map[string]any
	if err := json.Unmarshal(acct.JSON, &sa); err != nil {
		t.Fatal(err)
	}
	sa["token_uri"] = s.fcm.TokenURL()
	if acct.JSON, err = json.Marshal(sa); err != nil {
		t.Fatal(err)
	}
	saFile, err := acct.WriteFile(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	fcmCA := filepath.Join(s.dir, "fcm-ca.pem")
	if err := os.WriteFile(fcmCA, s.fcm.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	return map[string]any{
		"apns": map[string]any{"environment": "development", "topic": bundleID, "key_file": keyFile, "key_id": key.KeyID,
			"team_id": key.TeamID, "endpoint": s.apns.URL(), "ca_file": apnsCA},
		"fcm": map[string]any{"project_id": fcmProject, "service_account_file": saFile, "endpoint": s.fcm.URL(), "ca_file": fcmCA},
	}
}

// build creates the topics (tiers delay tiers), a MySQL database and the
// config file with providers as the app's provider settings; settings
// ("dispatcher.chunk_size": 10) override keys.
func (s *stack) build(tiers int, providers map[string]any, settings map[string]any) {
	t := s.t
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	dsn, _ := testenv.MySQL(t)
	name := "t-" + randomHex(4)
	raw := map[string]any{
		"kafka": map[string]any{
			"brokers": brokers, "group_prefix": name, "client_id": name,
			"topics": map[string]any{
				"campaigns":          map[string]any{"name": name + ".campaigns", "partitions": 1},
				"control":            map[string]any{"name": name + ".control", "partitions": 1},
				"delay":              map[string]any{"name": name + ".delay", "partitions": 2},
				"ready":              map[string]any{"name": name + ".ready", "partitions": 2},
				"results":            map[string]any{"name": name + ".results", "partitions": 2},
				"dead_letter":        map[string]any{"name": name + ".dead-letter", "partitions": 1},
				"registrations":      map[string]any{"name": name + ".registrations", "partitions": 1},
				"replication_factor": 1,
			},
		},
		"delay": map[string]any{"tiers": tiers},
		"mysql": map[string]any{"dsn": dsn},
		// Each stage's ops endpoint on a port of its own; startWith reads
		// it from the stage's log.
		"http":       map[string]any{"addr": "127.0.0.1:0"},
		"log":        map[string]any{"level": "debug"},
		"dispatcher": map[string]any{"chunk_size": 100, "max_attempts": 3},
		"apps":       map[string]any{appName: map[string]any{"concurrency": 50}},
	}
	for k, v := range providers {
		set(raw, []string{"apps", appName, k}, v)
	}
	for k, v := range settings {
		set(raw, strings.Split(k, "."), v)
	}
	s.raw = raw
	s.writeConfig(raw)

	s.cl = testenv.KafkaClient(t, kgo.ProducerLinger(0))
	adm := kadm.NewClient(s.cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	specs := kafka.Layout(s.cfg)
	if _, err := kafka.EnsureTopics(ctx, adm, 1, specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		names := make([]string, len(specs))
		for i, sp := range specs {
			names[i] = sp.Name
		}
		_, _ = adm.DeleteTopics(ctx, names...)
	})
	for {
		problems, err := kafka.VerifyTopics(ctx, adm, specs)
		if err == nil && len(problems) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("topics not ready: %v %v", problems, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.ladder = delay.LadderFrom(s.cfg)
}

func set(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// writeConfig writes raw and loads it back through config.Load, as the
// binary will.
func (s *stack) writeConfig(raw map[string]any) {
	s.t.Helper()
	s.cfgPath = filepath.Join(s.dir, "pushlane.yaml")
	y, err := yaml.Marshal(raw)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, y, 0o600); err != nil {
		s.t.Fatal(err)
	}
	if s.cfg, err = config.Load(s.cfgPath, nil); err != nil {
		s.t.Fatal(err)
	}
}

// variant writes a second config file: the stack's, with settings
// overridden; it returns the file's path.
func (s *stack) variant(name string, settings map[string]any) string {
	s.t.Helper()
	raw, err := json.Marshal(s.raw)
	if err != nil {
		s.t.Fatal(err)
	}
	var cp map[string]any
	if err := json.Unmarshal(raw, &cp); err != nil {
		s.t.Fatal(err)
	}
	for k, v := range settings {
		set(cp, strings.Split(k, "."), v)
	}
	y, err := yaml.Marshal(cp)
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// proc is a running dispatcher binary.
type proc struct {
	cmd  *exec.Cmd
	log  *testenv.SyncBuffer
	done chan struct{} // closed once the process exited; err is then set
	err  error         // from Wait
	ops  string        // host:port of its ops endpoint
}

// raceExit is the exit status of a binary built with -race that saw a
// data race (the race detector's default; README: "a stage that reports a
// race exits 66 and fails its test").
const raceExit = 66

// readyTimeout bounds a stage's start until /readyz answers 200 (builds
// under -race on a shared two-core machine start slowly).
const readyTimeout = 90 * time.Second

// stopGrace bounds the drain after the cleanup's SIGTERM.
const stopGrace = 30 * time.Second

// start runs the binary with the stack's config and waits until it is ready.
func (s *stack) start(extra ...string) *proc {
	s.t.Helper()
	return s.startWith(s.cfgPath, extra...)
}

// startWith runs the binary with the config file path and waits until its
// /readyz answers 200: its groups are joined with partitions assigned and
// its control view has caught up.
func (s *stack) startWith(path string, extra ...string) *proc {
	s.t.Helper()
	// A stable instance id: a restart after kill -9 takes the partitions
	// back at once instead of after the session timeout.
	args := append([]string{"-config", path, "-migrate", "-halt-probe", "1s", "-instance", "test-1"}, extra...)
	cmd := exec.Command(dispatcherBinary(s.t), args...)
	// The ops endpoint on a free port, whatever the shell exports.
	cmd.Env = append(os.Environ(), "PUSHLANE_HTTP__ADDR=127.0.0.1:0")
	p := &proc{cmd: cmd, log: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.t.Cleanup(func() { p.stop(s.t) })
	p.waitReady(s.t)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady reads the ops address from the log line "ops endpoint
// listening" and polls /readyz until it answers 200.
func (p *proc) waitReady(t testing.TB) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	last := "no ops endpoint in the log yet"
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("dispatcher exited before it was ready: %v\n%s", p.err, tail(p.log.String(), 4000))
		}
		if p.ops == "" {
			p.ops = testenv.OpsAddr(p.log.String())
		}
		if p.ops != "" {
			resp, err := hc.Get("http://" + p.ops + "/readyz")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
				last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
			} else {
				last = err.Error()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("dispatcher not ready within %v (last: %s)\n%s", readyTimeout, last, tail(p.log.String(), 4000))
}

// metric is the value of series (`name` or `name{label="v"}`, labels as
// /metrics prints them) on the process's ops endpoint; 0 when absent (a
// labelled counter appears on its first increment).
func (p *proc) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.ops + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics: %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// waitMetric polls series until ok accepts its value or timeout passes,
// and returns the last value.
func (p *proc) waitMetric(t testing.TB, series string, timeout time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := p.metric(t, series)
		if ok(v) || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop is the cleanup of a stage: one still running gets SIGTERM and
// stopGrace to drain, then SIGKILL (which fails the test). A stage that
// exited with the race detector's status, or whose log reports a data
// race (a stage killed with -9 never gets to exit 66), fails the test, so
// races show under GOFLAGS=-race; so does a non-zero exit after the
// cleanup's SIGTERM.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil && p.exitCode() != raceExit {
				t.Errorf("dispatcher exited with %v after the cleanup's SIGTERM", p.err)
			}
		case <-time.After(stopGrace):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("dispatcher still running %v after SIGTERM; killed", stopGrace)
		}
	}
	if p.exitCode() == raceExit {
		t.Errorf("dispatcher exited with status %d: the race detector found a data race", raceExit)
	} else if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
		t.Errorf("dispatcher log reports a data race")
	}
	if t.Failed() {
		t.Logf("dispatcher log (tail):\n%s", tail(p.log.String(), 4000))
	}
}

// exitCode is the process's exit status, -1 if it was killed by a signal
// (or runs).
func (p *proc) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// kill sends sig and waits for the process to exit.
func (p *proc) kill(t testing.TB, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		t.Fatalf("dispatcher did not exit within 60 s of %v", sig)
		return nil
	}
}

// token is device i's token: 64 hex digits (APNs wants hex), unique to
// the test and the batch.
func (s *stack) token(batch string, i int) string {
	h := fnv.New64a()
	h.Write([]byte(batch))
	return fmt.Sprintf("%s%016x%036x", s.prefix, h.Sum64(), i)
}

// batch builds a batch of n devices, iOS and Android alternating.
func (s *stack) batch(id, campaign string, n int, sendAt time.Time) schemas.Batch {
	b := schemas.Batch{
		SchemaVersion: schemas.SchemaVersion, ID: id, CampaignID: campaign, CampaignVersion: 1, App: appName,
		Attempt: 1, SendAt: sendAt.UTC(),
		Content: schemas.Content{Title: "Hello", Body: "from the dispatcher test"},
	}
	for i := range n {
		p := schemas.PlatformIOS
		if i%2 == 1 {
			p = schemas.PlatformAndroid
		}
		b.Devices = append(b.Devices, schemas.BatchDevice{DeviceID: int64(i + 1), Token: s.token(id, i), Platform: p})
	}
	return b
}

// write produces b to the topic the ladder picks now, as the planner does
// (or to topic, when given).
// writeDueNow writes count batches of devices each, due now, with ids
// <prefix>0, <prefix>1, ...
func (s *stack) writeDueNow(prefix, campaign string, count, devices int) []schemas.Batch {
	s.t.Helper()
	bs := make([]schemas.Batch, count)
	for i := range bs {
		bs[i] = s.batch(fmt.Sprintf("%s%d", prefix, i), campaign, devices, time.Now())
		s.write(bs[i])
	}
	return bs
}

func (s *stack) write(b schemas.Batch, topic ...string) {
	s.t.Helper()
	v, err := json.Marshal(b)
	if err != nil {
		s.t.Fatal(err)
	}
	dst := s.ladder.Route(b.SendAt, time.Now())
	if len(topic) > 0 {
		dst = topic[0]
	}
	if err := s.cl.ProduceSync(context.Background(), delay.BatchRecord(dst, b.ID, b.CampaignID, b.SendAt, b.ExpiresAt, v)).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) publish(campaign, action string) time.Time {
	s.t.Helper()
	if err := control.Publish(context.Background(), s.cl, s.cfg.Kafka.Topics.Control.Name, schemas.CampaignControl{CampaignID: campaign, Action: action}); err != nil {
		s.t.Fatal(err)
	}
	return time.Now()
}

// results reads the results topic from the start until n arrived or
// timeout; its consumer is closed before it returns.
func (s *stack) results(n int, timeout time.Duration) []schemas.Result {
	s.t.Helper()
	return s.readResults(timeout, 0, func(out []schemas.Result) bool { return len(out) >= n })
}

// resultsDistinct reads the results topic from the start until n distinct
// result ids arrived (or timeout), then one more second for any record
// behind them, and returns every record read: duplicates of one id (a
// killed process's last chunk) are kept, not counted towards n.
func (s *stack) resultsDistinct(n int, timeout time.Duration) []schemas.Result {
	s.t.Helper()
	ids := map[string]bool{}
	seen := 0
	return s.readResults(timeout, time.Second, func(out []schemas.Result) bool {
		for _, r := range out[seen:] {
			ids[r.ID] = true
		}
		seen = len(out)
		return len(ids) >= n
	})
}

// readResults reads the results topic from the start until enough says so
// (then tail longer, if not 0) or timeout; its consumer is closed before it
// returns.
func (s *stack) readResults(timeout, tail time.Duration, enough func([]schemas.Result) bool) []schemas.Result {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers(s.t)...),
		kgo.ConsumeTopics(s.cfg.Kafka.Topics.Results.Name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		s.t.Fatalf("kafka client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []schemas.Result
	tailing := false
	for {
		if !tailing && enough(out) {
			if tail == 0 {
				break
			}
			var stop context.CancelFunc
			ctx, stop = context.WithTimeout(ctx, tail)
			defer stop()
			tailing = true
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, r := range fs.Records() {
			res, err := schemas.DecodeResult(r.Value)
			if err != nil {
				s.t.Fatalf("result does not match its schema: %v", err)
			}
			out = append(out, *res)
		}
	}
	return out
}

// acceptedAt is when the simulator of r's platform accepted r's token last
// (zero if it did not).
func (s *stack) acceptedAt(r schemas.Result) time.Time {
	last := s.apns.Last
	if r.Platform != schemas.PlatformIOS {
		last = s.fcm.Last
	}
	rec, _ := last(r.Token)
	return rec.At
}

// warmUp sends a small batch and waits for its results: the dispatcher
// has then joined its groups, its control view has caught up and its
// provider connections are open, so what a test measures next is the
// steady state, not the start-up.
func (s *stack) warmUp() {
	s.t.Helper()
	b := s.batch("warm-up", "warm-up", 4, time.Now())
	s.write(b)
	if rs := s.results(4, 60*time.Second); len(rs) != 4 {
		s.t.Fatalf("warm-up: %d results, want 4", len(rs))
	}
}

// accepted is the number of distinct tokens of batch accepted by the
// simulators, and how many sends beyond one per token they accepted.
func (s *stack) accepted(b schemas.Batch) (devices, extra int) {
	for _, d := range b.Devices {
		n := s.apns.AcceptedFor(d.Token) + s.fcm.AcceptedFor(d.Token)
		if n > 0 {
			devices++
			extra += n - 1
		}
	}
	return devices, extra
}

// waitAccepted polls the simulators until want devices of the batches were
// accepted or timeout passes; it returns the devices and extra sends.
func (s *stack) waitAccepted(want int, timeout time.Duration, bs ...schemas.Batch) (devices, extra int) {
	deadline := time.Now().Add(timeout)
	for {
		devices, extra = 0, 0
		for _, b := range bs {
			d, e := s.accepted(b)
			devices += d
			extra += e
		}
		if devices >= want || time.Now().After(deadline) {
			return devices, extra
		}
		time.Sleep(20 * time.Millisecond)
	}
}
