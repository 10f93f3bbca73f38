package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets this test binary act as "another test process" holding or
// probing the stack lock (TESTENV_LOCK_CHILD=hold|probe-shared|probe-exclusive).
func TestMain(m *testing.M) {
	if mode := os.Getenv("TESTENV_LOCK_CHILD"); mode != "" {
		os.Exit(lockChild(mode, os.Getenv("TESTENV_LOCK_PATH")))
	}
	os.Exit(m.Run())
}

func lockChild(mode, path string) int {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		fmt.Println("open:", err)
		return 2
	}
	defer f.Close()
	switch mode {
	case "hold":
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			fmt.Println("flock:", err)
			return 2
		}
		fmt.Println("locked")
		// Long enough that the probe started 0.5 s into the parent's wait
		// finds the queue even when starting a process takes seconds on a
		// loaded machine.
		time.Sleep(5 * time.Second)
		return 0
	case "probe-shared", "probe-exclusive":
		how := syscall.LOCK_SH
		if mode == "probe-exclusive" {
			how = syscall.LOCK_EX
		}
		if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
			fmt.Println("busy")
			return 0
		}
		fmt.Println("free")
		return 0
	}
	return 2
}

func lockChildCmd(mode, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TESTENV_LOCK_CHILD="+mode, "TESTENV_LOCK_PATH="+path)
	return cmd
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

func probe(t *testing.T, mode, path string) string {
	t.Helper()
	out, err := lockChildCmd(mode, path).Output()
	if err != nil {
		t.Fatalf("%s child: %v (%s)", mode, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestExclusiveWaitsForOtherProcessesAndReturnsToShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stack.lock")
	l := &stackLock{path: path}

	holder := lockChildCmd("hold", path)
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("holder child said %q, %v", line, err)
	}

	// Shared use goes alongside the holder at once.
	start := time.Now()
	l.share(t)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("shared lock took %s while another process held it shared", d)
	}

	t.Run("disruptive", func(t *testing.T) {
		// While this process queues for exclusive, a process starting now must wait.
		queued := make(chan string, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			out, err := lockChildCmd("probe-shared", path+".intent").Output()
			queued <- fmt.Sprintf("%s%v", strings.TrimSpace(string(out)), errString(err))
		}()
		start := time.Now()
		l.exclude(t)
		if got := <-queued; got != "busy" {
			t.Fatalf("a newcomer could take the intent lock shared while an exclusive request queued: %s", got)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("exclusive lock granted after %s while the holder (5 s) still had it shared", d)
		}
		if got := probe(t, "probe-shared", path); got != "busy" {
			t.Fatalf("another process could lock shared during the exclusive section: %s", got)
		}
		l.exclude(t) // nested use in the same process does not wait on itself
	})

	// After the disruptive test this process is back to shared: others may share, not exclude.
	if got := probe(t, "probe-shared", path); got != "free" {
		t.Fatalf("after cleanup a shared lock by another process was %s, want free", got)
	}
	if got := probe(t, "probe-exclusive", path); got != "busy" {
		t.Fatalf("after cleanup an exclusive lock by another process was %s, want busy (we still share)", got)
	}
	if l.exclusive != 0 {
		t.Fatalf("exclusive count after cleanup = %d, want 0", l.exclusive)
	}
}
