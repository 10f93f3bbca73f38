package providers_test

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushlane/pushlane/providers"
)

func TestBackoffIsExponentialWithEqualJitterAndCapped(t *testing.T) {
	p := providers.DefaultBackoff()
	for _, c := range []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0.5, 750 * time.Millisecond},
		{2, 0.5, 1500 * time.Millisecond},
		{3, 0.999999, 4 * time.Second},
		{4, 0, 4 * time.Second},                   // the fixed half of the 8 s window
		{20, 0.5, 7*time.Minute + 30*time.Second}, // capped at 10 min
		{0, 1, time.Second},
	} {
		got := p.Delay(c.attempt, 0, c.jitter)
		if got.Round(time.Millisecond) != c.want.Round(time.Millisecond) {
			t.Errorf("Delay(%d, 0, %v) = %s, want %s", c.attempt, c.jitter, got, c.want)
		}
	}
	// Retry-After is honoured and spread above, by up to a quarter of it
	// (at most 5 minutes), so a burst refused together does not come back
	// together.
	for _, c := range []struct {
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{30 * time.Second, 0, 30 * time.Second},
		{30 * time.Second, 0.5, 33750 * time.Millisecond},
		{time.Minute, 0.999999, 75 * time.Second},
		{time.Hour, 0.5, time.Hour + 150*time.Second},
		// A Retry-After that saturated (an HTTP date centuries ahead)
		// does not wrap into the past.
		{math.MaxInt64, 0.5, math.MaxInt64},
	} {
		if got := p.Delay(1, c.retryAfter, c.jitter); got.Round(time.Millisecond) != c.want {
			t.Errorf("Delay(1, %s, %v) = %s, want %s", c.retryAfter, c.jitter, got, c.want)
		}
	}
	for range 1000 {
		if d := providers.Backoff(3, 0); d < 2*time.Second || d > 4*time.Second {
			t.Fatalf("Backoff(3) = %s outside [2s, 4s]", d)
		}
	}
	// The whole chain before giving up outlasts a minute-long outage,
	// whatever the jitter.
	var least time.Duration
	for a := 1; a < providers.MaxAttempts; a++ {
		least += p.Delay(a, 0, 0)
	}
	if least < 63*time.Second {
		t.Errorf("retries of one device span at least %s, want over a minute", least)
	}
	if !p.GiveUp(providers.MaxAttempts) || p.GiveUp(providers.MaxAttempts-1) {
		t.Error("GiveUp")
	}
}

func TestHaltRegistry(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	h, err := providers.NewHalt(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var first sync.Map
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.Halt("a", "apns", "BadCertificate", errors.New("403 BadCertificate")) {
				first.Store(i, true)
			}
			_, _ = h.Halted("a", "apns")
		}()
	}
	wg.Wait()
	n := 0
	first.Range(func(_, _ any) bool { n++; return true })
	if n != 1 || strings.Count(logs.String(), "app halted") != 1 {
		t.Fatalf("%d callers saw themselves first; logs:\n%s", n, logs.String())
	}
	h.Halt("b", "fcm", "PERMISSION_DENIED", nil)
	if l := h.List(); len(l) != 2 || l[0].App != "a" || l[1].Reason != "PERMISSION_DENIED" {
		t.Fatalf("list = %+v", l)
	}
	if !h.Resume("a", "apns") || h.Resume("a", "apns") {
		t.Fatal("resume")
	}
	if _, halted := h.Halted("a", "apns"); halted {
		t.Fatal("still halted")
	}
	// A second registry on the same registerer reuses the gauge.
	if _, err := providers.NewHalt(nil, reg); err != nil {
		t.Fatal(err)
	}
}

func TestRejectedResult(t *testing.T) {
	err := &providers.RejectError{Provider: "apns", Reason: "PayloadTooLarge", Detail: "payload is 5000 bytes"}
	r := providers.Rejected(err, 4)
	if r.Outcome != providers.PayloadRejected || r.Reason != "PayloadTooLarge" || r.Attempt != 4 ||
		r.Err.Error() != "apns: payload rejected before sending: PayloadTooLarge: payload is 5000 bytes" {
		t.Fatalf("%+v", r)
	}
	for _, o := range providers.AllOutcomes() {
		if !o.Valid() {
			t.Errorf("%s invalid", o)
		}
	}
	if providers.Outcome("lost").Valid() {
		t.Error("lost is valid")
	}
}
