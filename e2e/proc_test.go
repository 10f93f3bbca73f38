package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/testenv"
)

// proc is one stage process.
type proc struct {
	Name    string // e.g. "dispatcher-1"
	Stage   string
	OpsAddr string
	LogPath string

	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}

	mu       sync.Mutex
	err      error // from Wait
	expected bool  // stopped or killed by the test
	final    testenv.ProcStats
}

// startProc runs bin with args and extra environment, its stderr and stdout
// in logPath, and waits until its /readyz answers 200 on its ops endpoint.
// The stage is started on ops port 0 (PUSHLANE_HTTP__ADDR in env) and logs
// the port it got: a port chosen here and handed over could be taken
// meanwhile.
func startProc(t testing.TB, name, stage, bin string, args, env []string, readyPath, logPath string) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = lf
	cmd.Stderr = lf
	// A test binary killed by go test's -timeout (or by hand) runs no
	// cleanup: its stages must not live on, polling deleted topics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{Name: name, Stage: stage, LogPath: logPath, cmd: cmd, log: lf, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("e2e: start %s: %v", name, err)
	}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		lf.Close()
		close(p.done)
	}()
	addr, err := p.loggedOpsAddr(90 * time.Second)
	if err != nil {
		t.Fatalf("e2e: %s: %v\n%s", name, err, tail(logPath, 40))
	}
	p.OpsAddr = addr
	if err := p.waitReady(readyPath, 90*time.Second); err != nil {
		t.Fatalf("e2e: %s not ready: %v\n%s", name, err, tail(logPath, 40))
	}
	return p
}

// loggedOpsAddr waits for the stage's "ops endpoint listening" line (JSON
// logs) and returns its address.
func (p *proc) loggedOpsAddr(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.LogPath)
		if addr := testenv.OpsAddr(string(b)); addr != "" {
			return addr, nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("exited before its ops endpoint listened: %v", p.exitErr())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("no ops endpoint logged within %s", timeout)
}

// waitReady polls path (/readyz) until it answers 200, the process exits, or timeout.
func (p *proc) waitReady(path string, timeout time.Duration) error {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.exitErr())
		default:
		}
		resp, err := cl.Get("http://" + p.OpsAddr + path)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(b.String()))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no 200 from %s within %s (last: %s)", path, timeout, last)
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Running reports whether the process is still running.
func (p *proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stats reads the process's peak RSS and CPU time now (or as last read
// before it was stopped).
func (p *proc) Stats() testenv.ProcStats {
	if !p.Running() {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.final
	}
	s, err := testenv.ReadProcStats(p.cmd.Process.Pid)
	if err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.final
	}
	return s
}

func (p *proc) snapshotStats() {
	if s, err := testenv.ReadProcStats(p.cmd.Process.Pid); err == nil {
		p.mu.Lock()
		p.final = s
		p.mu.Unlock()
	}
}

// Kill is kill -9.
func (p *proc) Kill(t testing.TB) {
	t.Helper()
	p.snapshotStats()
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("e2e: kill %s: %v", p.Name, err)
	}
	<-p.done
	t.Logf("e2e: killed %s (SIGKILL)", p.Name)
}

// Stop sends SIGTERM and waits for a clean exit (the stage drains and
// commits); after grace it kills and fails the test.
func (p *proc) Stop(t testing.TB, grace time.Duration) {
	t.Helper()
	if !p.Running() {
		return
	}
	p.snapshotStats()
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if err := p.exitErr(); err != nil {
			t.Errorf("e2e: %s exited with %v after SIGTERM\n%s", p.Name, err, tail(p.LogPath, 20))
		} else {
			t.Logf("e2e: stopped %s (SIGTERM, %s)", p.Name, time.Since(start).Round(time.Millisecond))
		}
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("e2e: %s still running %s after SIGTERM; killed\n%s", p.Name, grace, tail(p.LogPath, 20))
	}
}

// unexpectedExit returns the exit error of a process that stopped without
// the test asking it to.
func (p *proc) unexpectedExit() error {
	if p.Running() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expected {
		return nil
	}
	if p.err == nil {
		return errors.New("exited with status 0 on its own")
	}
	return p.err
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// problems returns the log's lines at level WARN or ERROR (at most n, the
// first ones), for the test log of a failed test.
func problems(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(out) < n {
		line := sc.Text()
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) || strings.HasPrefix(line, "panic") {
			out = append(out, line)
		}
	}
	return out
}

// logDir returns a directory for process logs that outlives a failed test
// (t.TempDir is removed), named after the test.
func logDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pushlane-e2e-"+strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return filepath.Clean(dir)
}
