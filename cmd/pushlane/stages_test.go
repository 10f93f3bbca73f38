package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The control view stops only after the other stages have drained: a
// dispatcher finishing its chunk after a stop still reads it.
func TestStopKeepsTheControlViewUntilTheStagesHaveDrained(t *testing.T) {
	var viewRunning atomic.Bool
	var sawView atomic.Bool
	stages := []stage{
		{"control", func(ctx context.Context) error {
			viewRunning.Store(true)
			<-ctx.Done()
			viewRunning.Store(false)
			return ctx.Err()
		}},
		{"dispatcher", func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // the chunk in flight
			sawView.Store(viewRunning.Load())
			return nil
		}},
	}
	run := start(context.Background(), stages)
	for !viewRunning.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := run.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !sawView.Load() {
		t.Error("the control view stopped before the dispatcher had drained")
	}
	if viewRunning.Load() {
		t.Error("the control view still runs after stop")
	}
}

// Stages that overrun the grace are reported; the control view, which
// stops at once when asked, is not reported with them (it was, left no
// time of a grace the stages had used up).
func TestStopReportsOnlyWhatOverran(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stages := []stage{
		{"control", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}},
		{"feedback", func(ctx context.Context) error {
			<-ctx.Done()
			<-release // a drain that overruns
			return nil
		}},
	}
	run := start(context.Background(), stages)
	err := run.stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "stages still draining after 200ms") {
		t.Fatalf("stop = %v; want the stages reported", err)
	}
	if strings.Contains(err.Error(), "control view") {
		t.Errorf("stop = %v; the control view stopped and is reported", err)
	}
}
