package service

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
)

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlags("stage", "apply the MySQL migrations before consuming", &stderr)
	mode := fs.String("mode", "all", "the stage's own flag")
	if err := fs.Parse([]string{"-config", "/etc/p.yaml", "-migrate", "-check-config", "-mode", "delay", "rest"}); err != nil {
		t.Fatal(err)
	}
	if fs.ConfigPath != "/etc/p.yaml" || !fs.Migrate || !fs.CheckConfig || *mode != "delay" || fs.Arg(0) != "rest" {
		t.Errorf("parsed %+v, mode %q, args %v", fs, *mode, fs.Args())
	}

	fs = NewFlags("stage", "apply the MySQL and ClickHouse migrations before consuming", &stderr)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if fs.ConfigPath != "" || fs.Migrate || fs.CheckConfig {
		t.Errorf("defaults %+v", fs)
	}
	// A bad flag is an error, with the usage (every shared flag) on stderr.
	if err := fs.Parse([]string{"-nope"}); err == nil || err.Error() != "flag provided but not defined: -nope" {
		t.Errorf("bad flag: %v", err)
	}
	for _, want := range []string{"Usage of stage:", "-config file", "-migrate", "apply the MySQL and ClickHouse migrations before consuming", "-check-config"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestLoadAndPrintConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("mysql: {dsn: \"u:s3cret@tcp(127.0.0.1:3306)/d\"}\nhttp: {addr: \"127.0.0.1:9999\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := NewFlags("stage", "migrate", &bytes.Buffer{})
	if err := fs.Parse([]string{"-config", p}); err != nil {
		t.Fatal(err)
	}
	cfg, err := fs.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := PrintConfig(&out, cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Fatalf("the password was printed:\n%s", out.String())
	}
	// The keys the file and the environment use, as pushctl config prints them.
	for _, line := range []string{`http.addr = "127.0.0.1:9999"`, `mysql.dsn = "u:******@tcp(127.0.0.1:3306)/d`, "feedback.flush_interval = 1s"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("printed config lacks %q:\n%s", line, out.String())
		}
	}

	fs = NewFlags("stage", "migrate", &bytes.Buffer{})
	if err := fs.Parse([]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.LoadConfig(); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// opsAddr is where the process's logs say the ops endpoint listens.
func opsAddr(t *testing.T, logs string) string {
	t.Helper()
	addr := testenv.OpsAddr(logs)
	if addr == "" {
		t.Fatalf("no ops endpoint in the logs:\n%s", logs)
	}
	return addr
}

func testConfig(addr string) *config.Config {
	return &config.Config{Log: config.Log{Level: "info", Format: "json"}, HTTP: config.HTTP{Addr: addr}}
}

func TestStartAndClose(t *testing.T) {
	var logs bytes.Buffer
	ctx, proc, err := Start(context.Background(), testConfig("127.0.0.1:0"), &logs, "planner", "planner")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + opsAddr(t, logs.String())
	if code, body := get(t, url+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: planner: starting\n" {
		t.Errorf("/readyz before ready = %d %q", code, body)
	}
	proc.Ready.Set("planner", nil)
	if code, body := get(t, url+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	started := prometheus.NewCounter(prometheus.CounterOpts{Name: "pushlane_test_started_total", Help: "Starts."})
	started.Inc()
	proc.Metrics.MustRegister(started)
	if _, body := get(t, url+"/metrics"); !strings.Contains(body, "pushlane_test_started_total 1") {
		t.Errorf("/metrics does not serve the process's registry")
	}
	proc.Log.Info("hello")
	if !strings.Contains(logs.String(), `"msg":"hello","component":"planner"`) {
		t.Errorf("log lines %q", logs.String())
	}
	if ctx.Err() != nil {
		t.Fatal("cancelled before Close")
	}

	proc.Close()
	if ctx.Err() == nil {
		t.Error("context still live after Close")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("ops endpoint still serving after Close")
	}
}

func TestStartFailsOnABusyOpsPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, proc, err := Start(context.Background(), testConfig(ln.Addr().String()), &bytes.Buffer{}, "feedback")
	if err == nil || !strings.HasPrefix(err.Error(), "http.addr: listen "+ln.Addr().String()+": ") || ctx != nil || proc != nil {
		t.Errorf("busy port: %v %v %v", ctx, proc, err)
	}
}

// stage is a fake stage for RunWithView: it records when it started and
// stopped and returns err (at once when fail, else when ctx ends).
type stage struct {
	name string
	err  error
	fail bool
	rec  *recorder
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (s stage) run(ctx context.Context) error {
	s.rec.add(s.name + " started")
	if !s.fail {
		<-ctx.Done()
	}
	s.rec.add(s.name + " stopped")
	return s.err
}

// view is a fake control view: it runs until ctx ends, and records
// whether every stage had stopped by then.
func (s stage) view(stages int) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		stopped := 0
		for _, e := range s.rec.list() {
			if strings.HasSuffix(e, " stopped") {
				stopped++
			}
		}
		if stopped != stages {
			s.rec.add("view stopped before the stages")
		}
		s.rec.add("view stopped")
		return s.err
	}
}

func testProcess(component string) (*Process, *bytes.Buffer) {
	var logs bytes.Buffer
	return &Process{Log: NewLogger(config.Log{Level: "info", Format: "json"}, &logs, component), component: component}, &logs
}

func TestRunWithViewStopsOnCancelViewLast(t *testing.T) {
	rec := &recorder{}
	proc, logs := testProcess("dispatcher")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- proc.RunWithView(ctx, stage{rec: rec}.view(2), stage{name: "a", rec: rec}.run, stage{name: "b", rec: rec}.run)
	}()
	waitFor(t, func() bool { return len(rec.list()) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunWithView = %v", err)
	}
	if ev := rec.list(); len(ev) != 5 || ev[4] != "view stopped" {
		t.Errorf("events %v, want both stages started and stopped, then the view", ev)
	}
	if logs.Len() != 0 {
		t.Errorf("logged on a clean stop: %s", logs.String())
	}
}

func TestRunWithViewFirstFailingStageStopsTheOthers(t *testing.T) {
	rec := &recorder{}
	proc, logs := testProcess("dispatcher")
	boom := errors.New("delay: consume: boom")
	err := proc.RunWithView(context.Background(), stage{rec: rec}.view(2),
		stage{name: "waits", rec: rec}.run, stage{name: "fails", rec: rec, fail: true, err: boom}.run)
	if !errors.Is(err, boom) || err.Error() != boom.Error() {
		t.Errorf("RunWithView = %v, want %v", err, boom)
	}
	if ev := rec.list(); len(ev) != 5 || ev[4] != "view stopped" {
		t.Errorf("events %v", ev)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"stage stopped","component":"dispatcher","err":"delay: consume: boom"`) {
		t.Errorf("logs %s", logs.String())
	}
}

func TestRunWithViewLoneStageErrorIsNotLogged(t *testing.T) {
	rec := &recorder{}
	proc, logs := testProcess("planner")
	boom := errors.New("planner: boom")
	if err := proc.RunWithView(context.Background(), stage{rec: rec}.view(1), stage{name: "p", rec: rec, fail: true, err: boom}.run); !errors.Is(err, boom) {
		t.Errorf("RunWithView = %v", err)
	}
	if logs.Len() != 0 {
		t.Errorf("a lone stage's error is main's to report, logged: %s", logs.String())
	}
}

func TestRunWithViewFailingViewStopsTheStages(t *testing.T) {
	rec := &recorder{}
	proc, logs := testProcess("planner")
	viewErr := errors.New("control: consume ctl: client closed")
	view := func(context.Context) error { return viewErr }
	done := make(chan error, 1)
	go func() { done <- proc.RunWithView(context.Background(), view, stage{name: "p", rec: rec}.run) }()
	select {
	case err := <-done:
		if !errors.Is(err, viewErr) || err.Error() != viewErr.Error() {
			t.Errorf("RunWithView = %v, want the view's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stage still runs after the view failed")
	}
	if !strings.Contains(logs.String(), `"msg":"control view stopped; stopping the planner","component":"planner","err":"control: consume ctl: client closed"`) {
		t.Errorf("logs %s", logs.String())
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// A stage that reads the control view is not ready until the view has
// caught up: before, it could act on a campaign whose cancel it had not read.
func TestReadyOnceCaughtUp(t *testing.T) {
	var logs bytes.Buffer
	ctx, proc, err := Start(context.Background(), testConfig("127.0.0.1:0"), &logs, "planner", "planner", "control")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	url := "http://" + opsAddr(t, logs.String())
	caughtUp := make(chan struct{})
	proc.ReadyOnceCaughtUp(ctx, func(ctx context.Context) error {
		select {
		case <-caughtUp:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	proc.Ready.Set("planner", nil)
	if code, body := get(t, url+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: control: starting\n" {
		t.Errorf("/readyz before the view caught up = %d %q", code, body)
	}
	close(caughtUp)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, url+"/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the view caught up = %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
