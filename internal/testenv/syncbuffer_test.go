package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// Both of a child's streams written into one SyncBuffer arrive whole, and
// the buffer can be read while the child writes (the race detector checks
// the "while").
func TestSyncBufferCollectsBothStreams(t *testing.T) {
	var out SyncBuffer
	cmd := exec.Command("sh", "-c", `for i in $(seq 200); do echo "out $i"; echo "err $i" >&2; done`)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_ = out.String()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	count := map[string]int{}
	for _, l := range lines {
		count[strings.Fields(l)[0]]++
	}
	if len(lines) != 400 || count["out"] != 200 || count["err"] != 200 {
		t.Fatalf("got %d lines (%d out, %d err), want 400 (200 and 200)", len(lines), count["out"], count["err"])
	}
}
