package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/internal/config"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func startOps(t *testing.T, reg *prometheus.Registry, ready *Readiness) (*Ops, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	ops, err := StartOps("127.0.0.1:0", reg, ready, NewLogger(config.Log{Level: "info", Format: "json"}, &logs, "test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ops.Close(context.Background()) })
	return ops, &logs
}

func TestHealthz(t *testing.T) {
	ops, _ := startOps(t, NewRegistry(), NewReadiness("kafka"))
	// Alive even while not ready: liveness must not restart a pod that is
	// still connecting.
	code, body := get(t, "http://"+ops.Addr()+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

func TestReadyzNamesTheFailingChecks(t *testing.T) {
	ready := NewReadiness("kafka", "mysql")
	ops, _ := startOps(t, NewRegistry(), ready)
	url := "http://" + ops.Addr() + "/readyz"

	steps := []struct {
		set      func()
		code     int
		wantBody string
	}{
		{func() {}, 503, "not ready: kafka: starting; mysql: starting\n"},
		{func() { ready.Set("kafka", nil) }, 503, "not ready: mysql: starting\n"},
		{func() { ready.Set("mysql", errors.New("dial tcp 10.0.0.5:3306: connection refused")) }, 503,
			"not ready: mysql: dial tcp 10.0.0.5:3306: connection refused\n"},
		{func() { ready.Set("mysql", nil) }, 200, "ready\n"},
		// Draining: the stage marks itself unready before it stops.
		{func() { ready.Set("draining", errors.New("shutting down")) }, 503, "not ready: draining: shutting down\n"},
	}
	for i, s := range steps {
		s.set()
		// The same answer on every probe, whatever the map order.
		for range 5 {
			code, body := get(t, url)
			if code != s.code || body != s.wantBody {
				t.Fatalf("step %d: /readyz = %d %q, want %d %q", i, code, body, s.code, s.wantBody)
			}
		}
	}
}

func TestReadinessErr(t *testing.T) {
	r := NewReadiness()
	if err := r.Err(); err != nil {
		t.Errorf("no checks: %v", err)
	}
	cause := errors.New("boom")
	r.Set("b", cause)
	r.Set("a", errors.New("first"))
	err := r.Err()
	if err == nil || err.Error() != "a: first; b: boom" {
		t.Fatalf("Err = %v", err)
	}
	if !errors.Is(err, cause) {
		t.Error("Err does not wrap the check's error")
	}
}

func TestMetrics(t *testing.T) {
	reg := NewRegistry()
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushlane_test_sent_total", Help: "Sends."}, []string{"provider"})
	reg.MustRegister(sent)
	sent.WithLabelValues("apns").Add(3)
	ops, _ := startOps(t, reg, NewReadiness())
	code, body := get(t, "http://"+ops.Addr()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`pushlane_test_sent_total{provider="apns"} 3`,
		"# TYPE go_goroutines gauge",
		"process_resident_memory_bytes",
		"promhttp_metric_handler_errors_total", // the handler reports its own errors into reg
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStartOpsDisabledAndErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ops, err := StartOps("", NewRegistry(), NewReadiness(), log)
	if ops != nil || err != nil {
		t.Errorf("empty addr: %v %v, want disabled", ops, err)
	}
	if err := ops.Close(context.Background()); err != nil {
		t.Errorf("Close of a disabled endpoint: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = StartOps(ln.Addr().String(), NewRegistry(), NewReadiness(), log)
	if err == nil || !strings.HasPrefix(err.Error(), "http.addr: listen "+ln.Addr().String()+": ") {
		t.Errorf("busy port: %v", err)
	}
}

func TestOpsClose(t *testing.T) {
	ops, err := StartOps("127.0.0.1:0", NewRegistry(), NewReadiness(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := ops.Addr()
	if err := ops.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestLoggerJSONShape(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(config.Log{Level: "info", Format: "json"}, &buf, "dispatcher")
	log.Debug("hidden at info")
	log.Info("batch sent", "batch_id", "c1:v1:all:0", "devices", 1000, "err", errors.New("none"))
	log.Warn("slow provider", slog.Group("apns", "p99_ms", 812.5))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug suppressed):\n%s", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not one JSON object per line: %v\n%s", err, lines[0])
	}
	want := map[string]any{"level": "INFO", "msg": "batch sent", "component": "dispatcher",
		"batch_id": "c1:v1:all:0", "devices": float64(1000), "err": "none"}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, first[k], first[k], v)
		}
	}
	ts, ok := first["time"].(string)
	if !ok {
		t.Fatalf("time = %v", first["time"])
	}
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("time %q is not RFC 3339: %v", ts, err)
	}
	if len(first) != len(want)+1 {
		t.Errorf("keys %v, want exactly time + %v", first, want)
	}
	var second map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if g, _ := second["apns"].(map[string]any); second["level"] != "WARN" || g["p99_ms"] != 812.5 {
		t.Errorf("second line %v", second)
	}
}

func TestLoggerLevelsAndText(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(config.Log{Level: "debug", Format: "text"}, &buf, "planner")
	log.Debug("page read", "rows", 5000)
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=\"page read\" component=planner rows=5000") {
		t.Errorf("text line %q", got)
	}
	buf.Reset()
	log = NewLogger(config.Log{Level: "error", Format: "json"}, &buf, "planner")
	log.Warn("not shown")
	log.Error("shown")
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), `"msg":"shown"`) {
		t.Errorf("error level output %q", buf.String())
	}
}

func TestSignalContextFollowsParent(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, cancel := SignalContext(parent, slog.New(slog.DiscardHandler))
	defer cancel()
	cancelParent()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not cancelled with its parent")
	}
}

// signalHelperEnv makes the test binary act as a process under
// SignalContext (TestSignalHelperProcess), since a second signal exits the
// process, which a test must not do to itself.
const signalHelperEnv = "SERVICE_TEST_SIGNAL_HELPER"

func TestSignalHelperProcess(t *testing.T) {
	if os.Getenv(signalHelperEnv) != "1" {
		return // only a helper process for TestSignalContext
	}
	ctx, cancel := SignalContext(context.Background(), NewLogger(config.Log{Level: "info", Format: "json"}, os.Stdout, "helper"))
	defer cancel()
	os.Stdout.WriteString("ready\n")
	<-ctx.Done()
	os.Stdout.WriteString("draining\n")
	time.Sleep(2 * time.Second) // a slow drain, cut short by a second signal
	os.Stdout.WriteString("drained\n")
	os.Exit(0)
}

// runSignalHelper starts the helper, sends it signals, one after each
// line it waits for, and returns its output and exit code.
func runSignalHelper(t *testing.T, signals int) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalHelperProcess$")
	cmd.Env = append(os.Environ(), signalHelperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	lines := bufio.NewScanner(out)
	waitFor := func(line string) {
		for lines.Scan() {
			seen.WriteString(lines.Text() + "\n")
			if lines.Text() == line {
				return
			}
		}
		t.Fatalf("helper ended before %q:\n%s", line, seen.String())
	}
	waitFor("ready")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("draining")
	if signals == 2 {
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
	}
	for lines.Scan() {
		seen.WriteString(lines.Text() + "\n")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return seen.String(), exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return seen.String(), 0
}

func TestSignalContext(t *testing.T) {
	t.Run("SIGTERM cancels and the process drains", func(t *testing.T) {
		out, code := runSignalHelper(t, 1)
		if code != 0 || !strings.Contains(out, "drained\n") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
		if !strings.Contains(out, `"msg":"signal received: finishing in-flight work","component":"helper","signal":"terminated"`) {
			t.Errorf("no signal log line:\n%s", out)
		}
	})
	t.Run("a second signal exits at once", func(t *testing.T) {
		out, code := runSignalHelper(t, 2)
		if code != 1 || strings.Contains(out, "drained\n") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
		if !strings.Contains(out, `"msg":"second signal: exiting without draining","component":"helper","signal":"interrupt"`) {
			t.Errorf("no second-signal log line:\n%s", out)
		}
	})
}

// A stage run without an ops endpoint has no Readiness: setting a check on
// nil does nothing (the stages rely on it instead of checking).
func TestReadinessNilSetIsANoOp(t *testing.T) {
	var r *Readiness
	r.Set("dispatcher", errors.New("starting"))
	r.Set("dispatcher", nil)
}

// A scraper that asks for /metrics and stops reading leaves its handler
// blocked in Write; Close still returns, after a bounded graceful wait.
func TestOpsCloseDoesNotWaitForAStalledScraper(t *testing.T) {
	reg := NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pushlane_test_padding", Help: "Fills the page."}, []string{"k"})
	reg.MustRegister(g)
	pad := strings.Repeat("p", 200)
	for i := range 100_000 { // about 25 MB of exposition, more than loopback buffers hold
		g.WithLabelValues(fmt.Sprintf("%s%d", pad, i)).Set(1)
	}
	ops, err := StartOps("127.0.0.1:0", reg, NewReadiness(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ops.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: ops\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the handler fills the buffers and blocks; nothing is read
	done := make(chan error, 1)
	go func() { done <- ops.Close(context.Background()) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close has waited 30 s for a scraper that does not read")
	}
}
