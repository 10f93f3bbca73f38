package main

import (
	"context"
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
