package fcm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// BenchmarkSendExpiring is BenchmarkSend with a message that has an
// expiration instead of a fixed TTL, as every dispatcher batch with an
// expiry has: its android.ttl is what is left of the lifetime at each send.
func BenchmarkSendExpiring(b *testing.B) {
	env := benchTarget(b)
	s, err := fcm.New(fcm.Config{App: "bench", ServiceAccountJSON: env.account, Endpoint: env.url, RootCAs: env.pool,
		QuotaPerMinute: benchQuota}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	m := benchMessage()
	m.TTL, m.Expiration = 0, time.Now().Add(24*time.Hour)
	p, err := s.Prepare(m)
	if err != nil {
		b.Fatal(err)
	}
	runBench(b, func(ctx context.Context, token string) error {
		if r := p.Send(ctx, token, 1); r.Outcome != providers.Delivered {
			return fmt.Errorf("%s %s: %v", r.Outcome, r.Reason, r.Err)
		}
		return nil
	})
}

// BenchmarkBody is the per-send encoding alone: the prepared body with the
// token (and, with an expiration, the lifetime left) filled in.
func BenchmarkBody(b *testing.B) {
	sim, acct := startSim(b, nil)
	s := newSender(b, sim, acct, nil)
	expiring := benchMessage()
	expiring.TTL, expiring.Expiration = 0, time.Now().Add(24*time.Hour)
	for _, c := range []struct {
		name string
		m    *providers.Message
	}{{"ttl", benchMessage()}, {"expiration", expiring}} {
		b.Run(c.name, func(b *testing.B) {
			p, err := s.PrepareFCM(c.m)
			if err != nil {
				b.Fatal(err)
			}
			token := fmt.Sprintf("bench-%0140d", 1)
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Body(token)
			}
		})
	}
}
