package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer collects a child process's output for a test to read while
// the child still runs. Give the same SyncBuffer as both cmd.Stdout and
// cmd.Stderr: os/exec copies each from its own goroutine, and a bare
// bytes.Buffer would be written by both at once (its ReadFrom bypasses
// any wrapper's lock unless the wrapper hides it, as this one does).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (s *SyncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *SyncBuffer) String() string { return string(s.Bytes()) }
