package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

// A token is aged by the monotonic clock, so that a wall clock stepped
// back does not keep it past Apple's hour; the iat claim stays whole
// wall-clock seconds. No clock can be injected that steps the wall clock
// back while the monotonic one runs on (every time.Time method moves both
// or drops the monotonic reading), so this checks what ageing relies on:
// with time.Now as the clock, the issue time kept for ageing has its
// monotonic reading, and is the iat instant.
func TestProviderTokenIsAgedByTheMonotonicClock(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewProviderToken(key, "ABCDEFGHIJ", "ABCDEFGHIJ", 45*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tok.Current()
	if err != nil {
		t.Fatal(err)
	}
	// time.Time's String ends in "m=±<seconds>" when it has a monotonic
	// reading.
	if !strings.Contains(b.issuedAt().String(), " m=") {
		t.Fatalf("the token is aged from %s, which has no monotonic reading", b.issuedAt())
	}
	if !b.issuedAt().Equal(b.IssuedAt) || b.IssuedAt.Nanosecond() != 0 {
		t.Fatalf("aged from %s, iat %s: want the same whole second", b.issuedAt(), b.IssuedAt)
	}
	if again, err := tok.Current(); err != nil || again != b {
		t.Fatalf("a fresh token was re-signed: %v", err)
	}
}
