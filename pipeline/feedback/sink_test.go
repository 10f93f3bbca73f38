package feedback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

// flakyFile is a rows file whose writes, syncs and truncates fail while
// told to, a write after writing only room bytes, as on a full disk.
type flakyFile struct {
	*os.File
	failWrite    bool
	room         int
	failSync     bool
	failTruncate bool
}

func (f *flakyFile) Write(p []byte) (int, error) {
	if !f.failWrite {
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(f.room, len(p))])
	if err != nil {
		return n, err
	}
	return n, syscall.ENOSPC
}

func (f *flakyFile) Sync() error {
	if f.failSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *flakyFile) Truncate(size int64) error {
	if f.failTruncate {
		return syscall.EIO
	}
	return f.File.Truncate(size)
}

func openFlaky(t *testing.T, path string) (*FileSink, *flakyFile) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	ff := &flakyFile{File: f}
	s, err := newFileSink(ff)
	if err != nil {
		t.Fatal(err)
	}
	return s, ff
}

// checkRowsFile wants path to hold exactly lines whole rows and to
// summarise as campaignRows does.
func checkRowsFile(t *testing.T, path string, lines int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != lines || !bytes.HasSuffix(raw, []byte("\n")) {
		t.Errorf("file has %d lines (ends in %q), want %d whole lines:\n%s", n, raw[max(len(raw)-20, 0):], lines, raw)
	}
	acc := NewAccumulator()
	if err := ReadRows(bytes.NewReader(raw), acc); err != nil {
		t.Fatalf("ReadRows: %v", err)
	}
	if got, err := acc.Summary("c1"); err != nil || got != wantC1 {
		t.Errorf("summary from file = %+v, %v\nwant %+v", got, err, wantC1)
	}
}

// A write that fails half way (a full disk) must not poison the sink: the
// retry of the same flush succeeds and the file holds each of its rows
// once, on whole lines.
func TestFileSinkRetryAfterAFailedWriteWritesTheFlushOnce(t *testing.T) {
	ctx := context.Background()
	rows := campaignRows()
	for _, tc := range []struct {
		name string
		arm  func(f *flakyFile, on bool)
	}{
		{"write fails after a row and a half", func(f *flakyFile, on bool) {
			line, _ := json.Marshal(&rows[3])
			f.failWrite, f.room = on, len(line)*3/2
		}},
		{"nothing written", func(f *flakyFile, on bool) { f.failWrite, f.room = on, 0 }},
		{"sync fails after the write", func(f *flakyFile, on bool) { f.failSync = on }},
		{"write fails and so does the undo", func(f *flakyFile, on bool) {
			line, _ := json.Marshal(&rows[3])
			f.failWrite, f.room, f.failTruncate = on, len(line)+5, on
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rows.jsonl")
			s, ff := openFlaky(t, path)
			if err := s.Write(ctx, rows[:3]); err != nil {
				t.Fatal(err)
			}
			tc.arm(ff, true)
			if err := s.Write(ctx, rows[3:]); err == nil {
				t.Fatal("Write succeeded with the disk failing")
			}
			tc.arm(ff, false)
			if err := s.Write(ctx, rows[3:]); err != nil {
				t.Fatalf("retry after the disk recovered: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkRowsFile(t, path, len(rows))
		})
	}
}

// A failed write whose undo failed too is undone by Close.
func TestFileSinkCloseUndoesAFailedWrite(t *testing.T) {
	rows := campaignRows()
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	s, ff := openFlaky(t, path)
	if err := s.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	ff.failWrite, ff.room, ff.failTruncate = true, 30, true
	if err := s.Write(context.Background(), rows[:2]); err == nil {
		t.Fatal("Write succeeded with the disk failing")
	}
	ff.failWrite, ff.failTruncate = false, false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkRowsFile(t, path, len(rows))
}

// A process killed in the middle of a write leaves a torn last row: the
// next FileSink cuts it instead of appending a row to it, so the file
// stays readable for good; the torn row's flush is written again anyway.
func TestFileSinkCutsATornLastRowOnOpen(t *testing.T) {
	ctx := context.Background()
	rows := campaignRows()
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, rows[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// kill -9 after part of the next flush reached the file.
	torn, _ := json.Marshal(&rows[3])
	torn = torn[:len(torn)/2]
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, rows[3:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkRowsFile(t, path, len(rows))
}

// Bytes without a newline at the end that are not a row are not the
// sink's to cut: the rows start on a new line after them.
func TestFileSinkKeepsAForeignLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	if err := os.WriteFile(path, []byte("# notes\nno newline"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := campaignRows()
	if err := s.Write(context.Background(), rows[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	line, _ := json.Marshal(&rows[0])
	if want := "# notes\nno newline\n" + string(line) + "\n"; string(raw) != want {
		t.Errorf("file =\n%q\nwant\n%q", raw, want)
	}
}

// ReadRowsFrom skips and reports a torn row: the last line of a file whose
// writer was killed (or is still writing), and a torn row with a row
// appended on the same line, as a writer from before NewFileSink cut torn
// rows left it. Other bad lines are errors.
func TestReadRowsSkipsTornRows(t *testing.T) {
	rows := campaignRows()
	enc := func(rs ...Row) string {
		var b strings.Builder
		for i := range rs {
			line, _ := json.Marshal(&rs[i])
			b.Write(line)
			b.WriteByte('\n')
		}
		return b.String()
	}
	half := func(r Row) string {
		line, _ := json.Marshal(&r)
		return string(line[:len(line)/2])
	}
	for _, tc := range []struct {
		name  string
		file  string
		lines []int
	}{
		{"torn last line", enc(rows...) + half(rows[0]), []int{len(rows) + 1}},
		{"torn row glued to a row", enc(rows[:2]...) + half(rows[5]) + enc(rows[2:]...), []int{3}},
		{"torn after a few bytes", enc(rows...) + `{"resu`, []int{len(rows) + 1}},
		{"both", enc(rows[:2]...) + half(rows[2]) + enc(rows[2:]...) + half(rows[1]), []int{3, len(rows) + 1}},
		{"whole", enc(rows...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := NewAccumulator()
			st, err := ReadRowsFrom(strings.NewReader(tc.file), acc)
			if err != nil {
				t.Fatal(err)
			}
			if st.Rows != len(rows) || st.Torn != len(tc.lines) || !slices.Equal(st.TornLines, tc.lines) {
				t.Errorf("stats = %+v, want %d rows, torn lines %v", st, len(rows), tc.lines)
			}
			if got, err := acc.Summary("c1"); err != nil || got != wantC1 {
				t.Errorf("summary = %+v, %v\nwant %+v", got, err, wantC1)
			}
		})
	}
	for _, bad := range []struct{ file, line string }{
		{enc(rows[:1]...) + "not json\n", "line 2"},
		{enc(rows[:1]...) + "not json", "line 2"},
		{enc(rows[:1]...) + `{"result_id":"x","attempt":"one"}` + "\n", "line 2"},
		{`{"result_id":"x"}` + "}\n", "line 1"},
	} {
		if _, err := ReadRowsFrom(strings.NewReader(bad.file), NewAccumulator()); err == nil || !strings.Contains(err.Error(), bad.line) {
			t.Errorf("ReadRowsFrom(%q) err = %v, want one naming %s", bad.file, err, bad.line)
		}
	}
	if _, err := ReadRowsFrom(iotest.ErrReader(syscall.EIO), NewAccumulator()); !errors.Is(err, syscall.EIO) {
		t.Errorf("read error = %v, want EIO", err)
	}
}
