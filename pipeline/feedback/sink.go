package feedback

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink stores analytics rows. Write is called with every result of a flush
// and must be replay-safe: feedback writes a flush again after a failure or
// a restart, so the same rows (same ResultID) can arrive more than once and
// must count once. Write is not called concurrently.
type Sink interface {
	Write(ctx context.Context, rows []Row) error
}

// FileSink appends rows as JSON lines to a file, for the embedded demo that
// runs without ClickHouse. The file may hold a row more than once (after a
// replay or a retried flush); ReadRows and Accumulator count each ResultID
// once.
//
// Each Write encodes its rows in memory and writes them in one call, so
// the file only ever ends in the middle of a row when the process died
// during that call or the call failed (a full disk), never because a
// buffer filled up mid-row. A failed Write is undone by cutting the file back
// to the end of the last Write that succeeded, so feedback's retry of the
// same flush writes its rows once, after whole lines, and a kill -9 leaves
// at most a torn last line that NewFileSink cuts and ReadRows skips.
type FileSink struct {
	mu  sync.Mutex
	f   rowsFile
	buf bytes.Buffer
	// size is where the last Write that succeeded ended (for a regular
	// file): everything before it is whole lines.
	size int64
	// torn: a failed Write may have left bytes after size.
	torn bool
	// regular: the file can be truncated (not a pipe or a device).
	regular bool
}

// NewFileSink opens (creating or appending to) path, which only this sink
// writes to. A last line without its newline, a row torn by a process
// killed in the middle of a write, is cut off: its flush was not
// committed, so feedback writes its rows again. Other bytes without a
// newline at the end (not a row) are kept, and the rows start on a new
// line after them.
func NewFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("feedback: open rows file: %w", err)
	}
	s, err := newFileSink(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("feedback: rows file %s: %w", path, err)
	}
	return s, nil
}

// rowsFile is what FileSink needs of its *os.File (opened O_APPEND), so
// that tests can make writes fail as a full disk does.
type rowsFile interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

func newFileSink(f rowsFile) (*FileSink, error) {
	s := &FileSink{f: f}
	if err := s.endWithWholeLine(); err != nil {
		return nil, err
	}
	return s, nil
}

// endWithWholeLine makes the file end with a newline, cutting a torn row
// or adding the newline.
func (s *FileSink) endWithWholeLine() error {
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if s.regular = fi.Mode().IsRegular(); !s.regular {
		return nil
	}
	size := fi.Size()
	end := size // of the last whole line
	chunk := make([]byte, 64<<10)
	for end > 0 {
		n := min(end, int64(len(chunk)))
		if _, err := s.f.ReadAt(chunk[:n], end-n); err != nil {
			return fmt.Errorf("read the last line: %w", err)
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			end -= n - int64(i) - 1
			break
		}
		end -= n
	}
	s.size = size
	if end == size {
		return nil
	}
	head := make([]byte, min(size-end, int64(len(rowStart))))
	if _, err := s.f.ReadAt(head, end); err != nil {
		return fmt.Errorf("read the last line: %w", err)
	}
	if bytes.HasPrefix(rowStart, head) {
		if err := s.f.Truncate(end); err != nil {
			return fmt.Errorf("cut the torn last row: %w", err)
		}
		s.size = end
	} else {
		if _, err := s.f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("end the last line: %w", err)
		}
		s.size++
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync the last line: %w", err)
	}
	return nil
}

// Write appends rows and syncs the file, so a committed offset never covers
// a row that is not on disk. After a failure it leaves the file as it was
// before the call (or, if even that fails, it does so at the start of the
// next call, before writing anything), so a retry can succeed and rows are
// not written twice by it.
func (s *FileSink) Write(_ context.Context, rows []Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.torn {
		if err := s.truncate(); err != nil {
			return fmt.Errorf("feedback: rows file: undo the failed write: %w", err)
		}
	}
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return fmt.Errorf("feedback: encode row %s for the rows file: %w", rows[i].ResultID, err)
		}
	}
	err := s.write()
	if err == nil {
		s.size += int64(s.buf.Len())
		return nil
	}
	if s.regular {
		s.torn = true
		if terr := s.truncate(); terr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", terr))
		}
	}
	return fmt.Errorf("feedback: rows file: %w", err)
}

func (s *FileSink) write() error {
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// truncate cuts what a failed Write left after the last whole line. The
// file is opened O_APPEND, so the next write starts there.
func (s *FileSink) truncate() error {
	if err := s.f.Truncate(s.size); err != nil {
		return err
	}
	s.torn = false
	return nil
}

// Close closes the file, first cutting what a failed Write left.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.torn {
		err = s.truncate()
	}
	return errors.Join(err, s.f.Close())
}

// RowsFileStats is what ReadRowsFrom found in a rows file.
type RowsFileStats struct {
	Rows int // rows read, copies included
	// Torn counts the partial rows skipped: rows cut short by a writer
	// killed in the middle of a write (or still writing), as the last line,
	// or with a row appended to them on the same line by a writer from
	// before NewFileSink cut torn last lines. TornLines are their 1-based
	// line numbers.
	Torn      int
	TornLines []int
}

// ReadRows reads a JSON-lines rows file into acc, skipping torn rows; see
// ReadRowsFrom.
func ReadRows(r io.Reader, acc *Accumulator) error {
	_, err := ReadRowsFrom(r, acc)
	return err
}

// ReadRowsFrom reads a JSON-lines rows file into acc. A torn row (see
// RowsFileStats) is skipped and counted; any other line that is not a row
// is an error naming the line.
func ReadRowsFrom(r io.Reader, acc *Accumulator) (RowsFileStats, error) {
	var st RowsFileStats
	br := bufio.NewReaderSize(r, 1<<16)
	var batch []Row
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return st, fmt.Errorf("feedback: read rows file line %d: %w", line, err)
		}
		row, torn, perr := parseRowsLine(bytes.TrimSpace(text))
		if perr != nil {
			return st, fmt.Errorf("feedback: rows file line %d: %w", line, perr)
		}
		if torn {
			st.Torn++
			st.TornLines = append(st.TornLines, line)
		}
		if row != nil {
			batch = append(batch, *row)
		}
		if err != nil { // io.EOF
			break
		}
	}
	st.Rows = len(batch)
	return st, acc.Write(context.Background(), batch)
}

// rowStart opens every encoded Row: ResultID is its first field. It cannot
// occur inside a row, whose strings escape their quotes.
var rowStart = []byte(`{"result_id":`)

// parseRowsLine parses one line of a rows file: nothing for a blank line,
// the row, or, for a torn row, torn and the row appended to it if any.
func parseRowsLine(text []byte) (row *Row, torn bool, err error) {
	if len(text) == 0 {
		return nil, false, nil
	}
	var r Row
	if err = json.Unmarshal(text, &r); err == nil {
		return &r, false, nil
	}
	if cutShort(text) {
		return nil, true, nil
	}
	if i := bytes.LastIndex(text, rowStart); i > 0 && cutShort(text[:i]) {
		if json.Unmarshal(text[i:], &r) == nil {
			return &r, true, nil
		}
	}
	return nil, false, err
}

// cutShort reports whether b is the beginning of an encoded row that ends
// before the row does.
func cutShort(b []byte) bool {
	if !bytes.HasPrefix(b, rowStart) && !bytes.HasPrefix(rowStart, b) {
		return false
	}
	var v json.RawMessage
	return errors.Is(json.NewDecoder(bytes.NewReader(b)).Decode(&v), io.ErrUnexpectedEOF)
}

// MultiSink writes to each sink in turn; a failure stops the flush, which
// is retried whole (every sink is replay-safe).
type MultiSink []Sink

// Write writes rows to every sink.
func (m MultiSink) Write(ctx context.Context, rows []Row) error {
	for _, s := range m {
		if err := s.Write(ctx, rows); err != nil {
			return err
		}
	}
	return nil
}
