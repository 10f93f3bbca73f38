// Command gotestreport reads `go test -json` on stdin, keeps the full plain-text
// output in a file (per package, in the order packages finish, as `go test -v`
// prints it) and prints a short view: package results, failed and skipped tests
// with their output, build errors, panics outside tests, and a count of tests.
// It exits 1 when anything failed, 0 otherwise (skips are reported, not judged).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), including the build
// events the go command adds for packages that do not compile.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string
	FailedBuild string
}

// maxShown bounds the lines of one test's output in the short view; the log keeps all.
const maxShown = 60

type report struct {
	view io.Writer // the short view
	log  io.Writer // the full text output

	pkgOut    map[string]*strings.Builder // package output not yet written to log
	testOut   map[string][]string         // "pkg\x00test" -> output lines, for fail/skip views
	pkgLines  map[string][]string         // package-level output lines (Test == "")
	buildOut  map[string][]string         // ImportPath -> compiler output
	pkgOrder  []string
	failedPkg map[string]bool

	passed, failed, skipped      int
	pkgOK, pkgFailed, pkgNoTests int
	buildFailed                  int
	sawFailure                   bool
}

func newReport(view, log io.Writer) *report {
	return &report{
		view: view, log: log,
		pkgOut: map[string]*strings.Builder{}, testOut: map[string][]string{},
		pkgLines: map[string][]string{}, buildOut: map[string][]string{},
		failedPkg: map[string]bool{},
	}
}

func (r *report) appendLog(pkg, out string) {
	b, ok := r.pkgOut[pkg]
	if !ok {
		b = &strings.Builder{}
		r.pkgOut[pkg] = b
		r.pkgOrder = append(r.pkgOrder, pkg)
	}
	// test2json splits a marker line from preceding output that lacked a newline;
	// put it back on its own line so the log greps like `go test -v` output.
	if trimmed := strings.TrimLeft(out, " "); (strings.HasPrefix(trimmed, "--- ") || strings.HasPrefix(trimmed, "=== ")) &&
		b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(out)
}

func (r *report) flushLog(pkg string) {
	if b, ok := r.pkgOut[pkg]; ok {
		io.WriteString(r.log, b.String())
		if !strings.HasSuffix(b.String(), "\n") {
			io.WriteString(r.log, "\n")
		}
		delete(r.pkgOut, pkg)
	}
}

func isMarker(line string) bool {
	t := strings.TrimLeft(line, " ")
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- FAIL", "--- SKIP"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

func lastLines(lines []string, n int) ([]string, int) {
	if len(lines) <= n {
		return lines, 0
	}
	return lines[len(lines)-n:], len(lines) - n
}

func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		r.buildOut[e.ImportPath] = append(r.buildOut[e.ImportPath], e.Output)
		r.appendLog(e.ImportPath, e.Output)
		return
	case "build-fail":
		r.buildFailed++
		r.sawFailure = true
		fmt.Fprintf(r.view, "BUILD FAILED %s\n", e.ImportPath)
		for _, l := range r.buildOut[e.ImportPath] {
			fmt.Fprintf(r.view, "    %s", ensureNL(l))
		}
		r.flushLog(e.ImportPath)
		return
	}

	key := e.Package + "\x00" + e.Test
	if e.Action == "output" {
		r.appendLog(e.Package, e.Output)
		if e.Test != "" {
			r.testOut[key] = append(r.testOut[key], e.Output)
			return
		}
		r.pkgLines[e.Package] = append(r.pkgLines[e.Package], e.Output)
		line := strings.TrimRight(e.Output, "\n")
		switch {
		case strings.HasPrefix(line, "ok  "), strings.HasPrefix(line, "FAIL\t"), strings.HasPrefix(line, "?   "):
			fmt.Fprintln(r.view, line)
		}
		return
	}

	if e.Test != "" {
		switch e.Action {
		case "pass":
			r.passed++
		case "fail":
			r.failed++
			r.sawFailure = true
			r.showTest("FAIL", e, key)
		case "skip":
			r.skipped++
			r.showTest("SKIP", e, key)
		}
		if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
			delete(r.testOut, key)
		}
		return
	}

	switch e.Action {
	case "pass":
		r.pkgOK++
		r.flushLog(e.Package)
	case "skip": // a package without test files
		r.pkgNoTests++
		r.flushLog(e.Package)
	case "fail":
		r.pkgFailed++
		r.sawFailure = true
		r.failedPkg[e.Package] = true
		// Panics in TestMain, timeouts, os.Exit: output that belongs to no test.
		var body []string
		for _, l := range r.pkgLines[e.Package] {
			t := strings.TrimRight(l, "\n")
			if t == "FAIL" || t == "PASS" || strings.HasPrefix(t, "FAIL\t") || strings.HasPrefix(t, "ok  ") || isMarker(l) {
				continue
			}
			body = append(body, l)
		}
		if len(body) > 0 && e.FailedBuild == "" {
			shown, cut := lastLines(body, maxShown)
			fmt.Fprintf(r.view, "    output of %s outside any test:\n", e.Package)
			if cut > 0 {
				fmt.Fprintf(r.view, "        ... %d earlier lines in the log\n", cut)
			}
			for _, l := range shown {
				fmt.Fprintf(r.view, "        %s", ensureNL(l))
			}
		}
		r.flushLog(e.Package)
	}
	delete(r.pkgLines, e.Package)
}

func (r *report) showTest(kind string, e event, key string) {
	var body []string
	var marker string
	for _, l := range r.testOut[key] {
		if strings.HasPrefix(strings.TrimLeft(l, " "), "--- "+kind) {
			marker = strings.TrimRight(l, "\n")
			continue
		}
		if isMarker(l) {
			continue
		}
		body = append(body, l)
	}
	if marker == "" {
		marker = fmt.Sprintf("--- %s: %s", kind, e.Test)
	}
	fmt.Fprintf(r.view, "%s    (%s)\n", marker, e.Package)
	limit := maxShown
	if kind == "SKIP" {
		limit = 5
	}
	shown, cut := lastLines(body, limit)
	if cut > 0 {
		fmt.Fprintf(r.view, "        ... %d earlier lines in the log\n", cut)
	}
	for _, l := range shown {
		fmt.Fprintf(r.view, "        %s", ensureNL(strings.TrimLeft(l, " ")))
	}
}

func ensureNL(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// finish writes what never saw a package result (go test killed, stdin cut short).
func (r *report) finish() {
	var left []string
	for p := range r.pkgOut {
		left = append(left, p)
	}
	sort.Strings(left)
	for _, p := range left {
		r.flushLog(p)
	}
	fmt.Fprintf(r.view, "go test: %d packages ok, %d failed, %d build failures, %d without tests\n",
		r.pkgOK, r.pkgFailed, r.buildFailed, r.pkgNoTests)
	fmt.Fprintf(r.view, "tests: %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
}

func (r *report) run(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not JSON: the go command's own messages. Keep and show them.
			io.WriteString(r.log, string(line)+"\n")
			fmt.Fprintf(r.view, "%s\n", line)
			continue
		}
		r.handle(e)
	}
	r.finish()
	return sc.Err()
}

func main() {
	logPath := flag.String("log", "", "file for the full plain-text output (required)")
	flag.Parse()
	if *logPath == "" {
		fmt.Fprintln(os.Stderr, "gotestreport: -log is required")
		os.Exit(2)
	}
	f, err := os.Create(*logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotestreport:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(f)
	r := newReport(os.Stdout, w)
	runErr := r.run(os.Stdin)
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gotestreport: write log:", err)
		os.Exit(2)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "gotestreport: close log:", err)
		os.Exit(2)
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "gotestreport: read go test output:", runErr)
		os.Exit(2)
	}
	if r.sawFailure {
		os.Exit(1)
	}
}
