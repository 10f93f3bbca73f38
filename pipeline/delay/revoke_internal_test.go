package delay

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A revoke waits for the round of forwards in flight, so that its commit
// includes what the round forwarded; before, it ran beside a round that
// followed an empty poll, and the next owner forwarded those records again.
func TestRevokeWaitsForTheRoundInFlight(t *testing.T) {
	f := &Forwarder{held: map[topicPartition][]*kgo.Record{}, paused: map[topicPartition]bool{},
		failing: map[topicPartition]*headRetry{}, done: map[topicPartition]map[int64]bool{}}
	f.log = slog.New(slog.DiscardHandler)
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	f.round.Lock() // a round in flight
	revoked := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f.onRevoked(ctx, cl, map[string][]int32{"t00": {0}})
		close(revoked)
	}()
	select {
	case <-revoked:
		t.Fatal("the revoke dropped and committed while a round was in flight")
	case <-time.After(300 * time.Millisecond):
	}
	f.round.Unlock()
	select {
	case <-revoked:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoke did not go on once the round ended")
	}
}
