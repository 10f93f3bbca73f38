package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The services are shared by every test process on the machine (go test runs
// packages in parallel), so a test that stops or restarts one would break tests
// of other packages in flight. Each test process therefore holds a shared flock
// on one machine-wide file from its first use of a service until it exits, and
// StackCtl's disruptive actions turn it exclusive for the rest of the calling
// test: they wait until the other test processes now running have exited.
//
// A second file records the intent to go exclusive, so that processes starting
// meanwhile wait instead of starving the disruptive test. A process drops its
// shared lock before it queues for exclusive, so two disruptive packages never
// wait on each other.
//
// The state is per process by nature (a flock belongs to an open file), hence
// this one package-level variable.
var stack = &stackLock{path: filepath.Join(os.TempDir(), "pushlane-testenv-stack.lock")}

// lockWaitLimit bounds how long a test waits for the stack before failing.
const lockWaitLimit = 20 * time.Minute

type stackLock struct {
	path string // the lock itself; path+".intent" queues exclusive requests

	mu        sync.Mutex
	f, intent *os.File
	exclusive int // tests of this process inside a disruptive section
}

// share takes the process's shared lock on first use; later calls return at once.
func (l *stackLock) share(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("testenv: open stack lock %s: %v", l.path, err)
	}
	intent, err := os.OpenFile(l.path+".intent", os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		f.Close()
		t.Fatalf("testenv: open stack lock %s.intent: %v", l.path, err)
	}
	err = flockWait(t, intent, syscall.LOCK_SH, "a disruptive test elsewhere to finish")
	if err == nil {
		err = flockWait(t, f, syscall.LOCK_SH, "shared use of the test stack")
		syscall.Flock(int(intent.Fd()), syscall.LOCK_UN)
	}
	if err != nil {
		f.Close()
		intent.Close()
		t.Fatalf("testenv: %v", err)
	}
	l.f, l.intent = f, intent
}

// exclude gives the calling test the stack to itself until its cleanup.
func (l *stackLock) exclude(t testing.TB) {
	t.Helper()
	l.share(t)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exclusive == 0 {
		if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN); err != nil {
			t.Fatalf("testenv: unlock %s: %v", l.path, err)
		}
		err := flockWait(t, l.intent, syscall.LOCK_EX, "other disruptive tests to finish")
		if err == nil {
			err = flockWait(t, l.f, syscall.LOCK_EX, "exclusive use of the test stack (other test processes use it)")
			syscall.Flock(int(l.intent.Fd()), syscall.LOCK_UN)
		}
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	l.exclusive++
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.exclusive--
		if l.exclusive == 0 {
			if err := flockWait(t, l.f, syscall.LOCK_SH, "shared use of the test stack"); err != nil {
				t.Errorf("testenv: %v", err)
			}
		}
	})
}

// flockWait blocks in flock(how), logging every 30 s, failing after lockWaitLimit.
func flockWait(t testing.TB, f *os.File, how int, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(int(f.Fd()), how)
			if err != syscall.EINTR {
				done <- err
				return
			}
		}
	}()
	start := time.Now()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	limit := time.NewTimer(lockWaitLimit)
	defer limit.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("flock %s: %w", f.Name(), err)
			}
			if waited := time.Since(start); waited > time.Second {
				t.Logf("testenv: waited %s for %s", waited.Round(time.Millisecond), what)
			}
			return nil
		case <-tick.C:
			t.Logf("testenv: still waiting for %s (%s)", what, time.Since(start).Round(time.Second))
		case <-limit.C:
			return fmt.Errorf("no %s within %s (lock %s)", what, lockWaitLimit, f.Name())
		}
	}
}
