package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStats are a process's resource figures, read from /proc: what the
// benchmarks of the real commands report.
type ProcStats struct {
	PeakRSSKiB int64         // VmHWM
	CPU        time.Duration // user + system
}

// ReadProcStats reads VmHWM from /proc/<pid>/status and utime+stime from
// /proc/<pid>/stat.
func ReadProcStats(pid int) (ProcStats, error) {
	var s ProcStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				s.PeakRSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	cpu, err := ProcCPU(pid)
	s.CPU = cpu
	return s, err
}

// clockTicks is USER_HZ, 100 on Linux on every architecture Go supports.
const clockTicks = 100

// ProcCPU is the process's user + system time.
func ProcCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after ")".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
