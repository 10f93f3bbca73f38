package testenv

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// ownCPU is this process's CPU time as getrusage reports it.
func ownCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestReadProcStats(t *testing.T) {
	// Burn CPU and hold memory, so both figures are measurably above zero.
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	// Spin until the kernel has charged 300 ms of CPU (not 300 ms of wall
	// time: on a contended machine that may be well under 100 ms of CPU).
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ownCPU(t) < 300*time.Millisecond && time.Now().Before(deadline); n++ {
		for range 1 << 16 {
			buf[n%len(buf)]++
			n++
		}
	}
	s, err := ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PeakRSSKiB < 64<<10 {
		t.Errorf("peak RSS %d KiB after touching 64 MiB", s.PeakRSSKiB)
	}
	if s.CPU < 100*time.Millisecond {
		t.Errorf("CPU %s after spinning for 300 ms of CPU", s.CPU)
	}
	if cpu, err := ProcCPU(os.Getpid()); err != nil || cpu < s.CPU {
		t.Errorf("ProcCPU = %s, %v; want at least %s", cpu, err, s.CPU)
	}

	// A process that has exited has no /proc entry.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadProcStats(cmd.Process.Pid); err == nil {
		t.Error("no error for an exited process")
	}
	if _, err := ProcCPU(cmd.Process.Pid); err == nil {
		t.Error("ProcCPU: no error for an exited process")
	}
}
