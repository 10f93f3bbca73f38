package e2e

import (
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/providers/apnssim"
)

// TestFaultsMidCampaign runs a 100,000-device campaign, throttled so it
// lasts about a minute, and meanwhile: kills the dispatcher with SIGKILL and
// starts it again, restarts the Kafka broker, and makes both simulators
// answer 503 to everything for 10 s. Every live device must still be
// delivered, duplicates (counted per token by the simulators) must stay
// within the dispatcher's documented bound for one hard crash, and
// ClickHouse and MySQL must end exactly as without faults.
func TestFaultsMidCampaign(t *testing.T) {
	const app = "faults"
	pop := devices(t).app(t, app)
	// Take the stack to ourselves now (a restart of an idle broker), so the
	// restart mid-campaign does not first wait for other test processes.
	testenv.StackCtl(t, "restart", "kafka")

	p := newPipeline(t, spec{Apps: []string{app}})
	procs := p.StartAll()
	live := int64(pop.count(kindLive))
	sims := p.Sims[app]

	c := campaign("faults-"+p.Prefix, app, time.Time{})
	c.Options.ThrottlePerSecond = 2000 // about 50 s of sending
	published := p.Publish(c)

	at := p.WaitAccepted(app, live*15/100, 3*time.Minute)
	t.Logf("fault 1 at %d accepted (%s): kill -9 the dispatcher, start it again", at, time.Since(published).Round(time.Millisecond))
	procs["dispatcher"].Kill(t)
	procs["dispatcher"] = p.Restart(procs["dispatcher"])

	at = p.WaitAccepted(app, live*40/100, 3*time.Minute)
	t.Logf("fault 2 at %d accepted (%s): restart the Kafka broker", at, time.Since(published).Round(time.Millisecond))
	testenv.StackCtl(t, "restart", "kafka")
	after := sims.accepted()
	if at >= live {
		t.Errorf("the campaign was over before the broker restart (%d accepted)", at)
	}

	at = p.WaitAccepted(app, max(live*60/100, after+1), 3*time.Minute)
	t.Logf("fault 3 at %d accepted (%s): both simulators answer 503 for 10 s", at, time.Since(published).Round(time.Millisecond))
	sims.setFault(apnssim.Fault{Rate503: 1, For: 10 * time.Second})
	if at >= live {
		t.Errorf("the campaign was over before the 503s (%d accepted)", at)
	}

	done := p.WaitFinal(c.ID, len(pop.Devices), 5*time.Minute)
	t.Logf("every device has a final result %s after publishing", done.Sub(published).Round(time.Millisecond))

	unavailable := sims.APNs.Counts().Rejected["ServiceUnavailable"] + sims.FCM.Counts().Rejected["UNAVAILABLE"]
	if unavailable == 0 {
		t.Errorf("no send was answered 503: the fault did not happen mid-campaign")
	}
	tl := checkSimulatorTruth(t, sims, pop)
	bound := duplicateBound(p, 1)
	t.Logf("duplicates: %d sends on %d tokens after one kill -9, a broker restart and %d 503 answers; bound %d", tl.DuplicateSends, len(tl.Duplicated), unavailable, bound)
	if tl.DuplicateSends > bound {
		t.Errorf("%d duplicate sends, more than the documented bound %d for one hard crash", tl.DuplicateSends, bound)
	}
	checkResults(t, p, sims, pop, c.ID)
	checkHygiene(t, p, pop)
	p.CheckAlive()
}

// duplicateBound is the most duplicate sends crashes hard crashes of one
// dispatcher owning every ready partition may cause, as pipeline/dispatcher
// documents it: the chunk each sending batch had in flight,
// PartitionConcurrency × ChunkSize per partition.
func duplicateBound(p *pipeline, crashes int) int {
	return crashes * int(inFlightChunks(p)) * p.Cfg.Dispatcher.ChunkSize
}

// inFlightChunks is how many chunks one dispatcher may have started and not
// finished: one per batch being sent, PartitionConcurrency per partition.
func inFlightChunks(p *pipeline) int64 {
	return int64(p.Cfg.Kafka.Topics.Ready.Partitions) * int64(partitionConcurrency)
}

// partitionConcurrency is pipeline/dispatcher's default
// Config.PartitionConcurrency, which cmd/dispatcher does not change.
const partitionConcurrency = 4
