package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A throwaway module whose packages pass, fail, skip, panic outside a test and
// fail to build, run through the real `go test -json`.
var fixture = map[string]string{
	"go.mod": "module example.com/fx\n\ngo 1.22\n",
	"good/good_test.go": `package good
import "testing"
func TestA(t *testing.T) { t.Log("all-good-output") }
func TestB(t *testing.T) {
	t.Run("one", func(t *testing.T) {})
	t.Run("two", func(t *testing.T) {})
}
`,
	"bad/bad_test.go": `package bad
import ("fmt"; "testing")
func TestOK(t *testing.T) {}
func TestBroken(t *testing.T) {
	fmt.Print("no newline before the marker")
	t.Run("sub", func(t *testing.T) { t.Errorf("want 3, got %d", 2) })
}
func TestSkipped(t *testing.T) { t.Skip("integration: set SOMETHING") }
`,
	"panics/p_test.go": `package panics
import ("os"; "testing")
func TestMain(m *testing.M) { panic("boom in TestMain"); os.Exit(m.Run()) }
func TestNever(t *testing.T) {}
`,
	"nobuild/nb_test.go": "package nobuild\nimport \"testing\"\nfunc TestX(t *testing.T) { undefinedThing() }\n",
	"notests/n.go":       "package notests\n",
}

func TestReportOnRealGoTestOutput(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	dir := t.TempDir()
	for name, body := range fixture {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "-p=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	jsonOut, err := cmd.Output()
	if err == nil {
		t.Fatalf("go test on the fixture passed; want a failure. stderr:\n%s", stderr.String())
	}

	var view, log bytes.Buffer
	r := newReport(&view, &log)
	if err := r.run(bytes.NewReader(jsonOut)); err != nil {
		t.Fatalf("run: %v", err)
	}
	v, l := view.String(), log.String()

	// good: TestA, TestB, TestB/one, TestB/two; bad: TestOK.
	if r.passed != 5 || r.failed != 2 || r.skipped != 1 {
		t.Errorf("passed/failed/skipped = %d/%d/%d, want 5/2/1\nview:\n%s", r.passed, r.failed, r.skipped, v)
	}
	if r.pkgOK != 1 || r.pkgFailed != 3 || r.buildFailed != 1 || r.pkgNoTests != 1 {
		t.Errorf("packages ok/failed/build/none = %d/%d/%d/%d, want 1/3/1/1\nview:\n%s",
			r.pkgOK, r.pkgFailed, r.buildFailed, r.pkgNoTests, v)
	}
	if !r.sawFailure {
		t.Error("sawFailure = false")
	}
	for _, want := range []string{
		"ok  \texample.com/fx/good",
		"FAIL\texample.com/fx/bad",
		"--- FAIL: TestBroken/sub",
		"want 3, got 2",
		"--- SKIP: TestSkipped",
		"integration: set SOMETHING",
		"BUILD FAILED example.com/fx/nobuild",
		"undefined: undefinedThing",
		"panic: boom in TestMain",
		"tests: 5 passed, 2 failed, 1 skipped",
		"go test: 1 packages ok, 3 failed, 1 build failures, 1 without tests",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "--- PASS") || strings.Contains(v, "all-good-output") {
		t.Errorf("view shows passing tests' output:\n%s", v)
	}
	// The log greps like `go test -v`: markers at line starts, every package present.
	for _, want := range []string{`(?m)^--- PASS: TestA `, `(?m)^\s*--- PASS: TestB/two `, `(?m)^--- FAIL: TestBroken `,
		`(?m)^\s*--- FAIL: TestBroken/sub `, `(?m)^--- SKIP: TestSkipped `, `all-good-output`, `panic: boom in TestMain`, `undefinedThing`} {
		if !regexp.MustCompile(want).MatchString(l) {
			t.Errorf("log lacks %s:\n%s", want, l)
		}
	}
	if got := len(regexp.MustCompile(`(?m)^\s*--- PASS: `).FindAllString(l, -1)); got != 5 {
		t.Errorf("log has %d --- PASS lines, want 5", got)
	}
}

func TestReportPassesThroughNonJSONLines(t *testing.T) {
	var view, log bytes.Buffer
	r := newReport(&view, &log)
	in := "go: warning: something\n" +
		`{"Action":"start","Package":"p"}` + "\n" +
		`{"Action":"run","Package":"p","Test":"TestX"}` + "\n" +
		`{"Action":"output","Package":"p","Test":"TestX","Output":"--- PASS: TestX (0.00s)\n"}` + "\n" +
		`{"Action":"pass","Package":"p","Test":"TestX"}` + "\n" +
		`{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n" +
		`{"Action":"pass","Package":"p"}` + "\n"
	if err := r.run(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if r.sawFailure || r.passed != 1 || r.pkgOK != 1 {
		t.Fatalf("failure=%v passed=%d pkgOK=%d, want false/1/1", r.sawFailure, r.passed, r.pkgOK)
	}
	if !strings.Contains(view.String(), "go: warning: something") || !strings.Contains(log.String(), "go: warning: something") {
		t.Fatalf("non-JSON line lost; view:\n%s\nlog:\n%s", view.String(), log.String())
	}
	if !strings.Contains(view.String(), "tests: 1 passed, 0 failed, 0 skipped") {
		t.Fatalf("view:\n%s", view.String())
	}
}
