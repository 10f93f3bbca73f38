package testenv

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestReadProcStats(t *testing.T) {
	// Burn CPU and hold memory, so both figures are measurably above zero.
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	for n := 0; time.Since(start) < 300*time.Millisecond; n++ {
		buf[n%len(buf)]++
	}
	s, err := ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PeakRSSKiB < 64<<10 {
		t.Errorf("peak RSS %d KiB after touching 64 MiB", s.PeakRSSKiB)
	}
	if s.CPU < 100*time.Millisecond {
		t.Errorf("CPU %s after 300 ms of spinning", s.CPU)
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
