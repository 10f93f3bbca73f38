package service

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Main runs in a child process (it exits): -h prints the usage and exits
// 0, a failure prints "command: error" and exits 1.
func TestMainExitStatus(t *testing.T) {
	if arg := os.Getenv("SERVICE_MAIN_CHILD"); arg != "" {
		os.Args = []string{"stage", arg}
		Main("stage", func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := NewFlags("stage", "migrate", stderr)
			if err := fs.Parse(args); err != nil {
				return err
			}
			return errors.New("broken on purpose")
		})
		os.Exit(0) // Main returned: a stage's main ends here
	}
	for _, c := range []struct {
		arg, stderr string
		code        int
	}{
		{"-h", "-check-config", 0},
		{"-config=", "stage: broken on purpose", 1},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainExitStatus$")
		cmd.Env = append(os.Environ(), "SERVICE_MAIN_CHILD="+c.arg)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("stage %s: exit %d, stderr %q; want %d and %q", c.arg, code, stderr.String(), c.code, c.stderr)
		}
	}
}
