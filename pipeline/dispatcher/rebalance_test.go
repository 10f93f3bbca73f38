package dispatcher_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher/dispatchtest"
)

// A second dispatcher joins while the first has batches queued on every
// partition. franz-go's cooperative balancer ends each group session with
// a revoke callback that revokes nothing; the first member must keep its
// queued batches then, and hand over only what it loses. Every device gets
// exactly one result and one send.
func TestDispatchMemberJoiningLosesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, 4, nil)
	apps, s := h.slowApp("app1", 10*time.Millisecond, 4)
	group := dispatchtest.UniqueName("disp")
	h.start(group, apps, nil)
	const batches, per = 16, 25
	for i := range batches {
		h.write(batch(fmt.Sprintf("j%02d", i), "c1", "app1", per, time.Now()))
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(s.Sends()) < 40 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	joinedAt := len(s.Sends())
	h.start(group, apps, nil)
	rs := h.readResults(batches*per, 60*time.Second)
	if len(rs) != batches*per {
		t.Errorf("%d results, want %d: batches queued when the second member joined were dropped", len(rs), batches*per)
	}
	for tok, x := range dispatchtest.ByToken(rs) {
		if len(x) != 1 {
			t.Errorf("%s: %d results", tok, len(x))
		}
	}
	if d, dup := s.Devices(); d != batches*per || dup != 0 {
		t.Errorf("sent to %d devices, %d twice; want %d, 0", d, dup, batches*per)
	}
	if joinedAt >= batches*per {
		t.Errorf("everything was sent (%d) before the second member joined: the test proved nothing", joinedAt)
	}
	t.Logf("%d of %d sent when the second member joined", joinedAt, batches*per)
}
