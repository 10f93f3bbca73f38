package fcm_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
)

// BenchmarkSendExpiring is BenchmarkSend with a message that has an
// expiration instead of a fixed TTL, as every dispatcher batch with an
// expiry has: its android.ttl is what is left of the lifetime at each send.
func BenchmarkSendExpiring(b *testing.B) {
	m := benchMessage()
	m.TTL, m.Expiration = 0, time.Now().Add(24*time.Hour)
	benchSend(b, m)
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
