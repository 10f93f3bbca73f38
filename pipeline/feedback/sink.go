package feedback

import (
	"bufio"
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
// replay); ReadRows and Accumulator count each ResultID once.
type FileSink struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

// NewFileSink opens (creating or appending to) path.
func NewFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("feedback: open rows file: %w", err)
	}
	return &FileSink{f: f, w: bufio.NewWriterSize(f, 1<<16)}, nil
}

// Write appends rows and syncs the file, so a committed offset never covers
// a row that is not on disk.
func (s *FileSink) Write(_ context.Context, rows []Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	enc := json.NewEncoder(s.w)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return fmt.Errorf("feedback: write rows file: %w", err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("feedback: write rows file: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("feedback: sync rows file: %w", err)
	}
	return nil
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.w.Flush(), s.f.Close())
}

// ReadRows reads a JSON-lines rows file into acc.
func ReadRows(r io.Reader, acc *Accumulator) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
	line := 0
	var batch []Row
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var row Row
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return fmt.Errorf("feedback: rows file line %d: %w", line, err)
		}
		batch = append(batch, row)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("feedback: read rows file: %w", err)
	}
	return acc.Write(context.Background(), batch)
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
