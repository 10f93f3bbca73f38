// Package e2e tests the whole pipeline on the real stack started by
// deploy/local: Kafka, MariaDB and ClickHouse, with cmd/planner,
// cmd/dispatcher (which also runs the delay forwarder) and cmd/feedback
// running as separate processes, built once per test binary, and the APNs
// and FCM simulators running inside the test process so every accepted send
// is counted per token.
//
// Run it with the stack up:
//
//	deploy/local/test ./e2e/        (or: eval "$(deploy/local/env)"; go test ./e2e/)
//
// Each test gets its own topics and consumer groups (a unique
// kafka.topics.*.name prefix and kafka.group_prefix), its own ClickHouse
// database and its own simulators; the devices table is shared, seeded once
// per test binary, one app per test, so no test sees another's
// deactivations. A failed test prints each process's warnings, errors and
// last lines, and keeps the logs and the generated config.
//
// What each test proves:
//
//   - TestHappyPath: 100,000 devices (56% iOS, 1% dead, suspects, malformed
//     tokens): every live device accepted exactly once by its platform's
//     simulator, nothing else accepted; ClickHouse's deduplicated counts
//     equal the simulators', outcome by outcome; exactly the dead tokens
//     deactivated in MySQL, each suspect struck once.
//   - TestScheduledCampaignsAreSentInDueOrder: campaigns due in 90 s, 5 s and
//     now, published in that order, start in due order and none is sent
//     before its send-at (simulator samples every 5 ms, and each result's
//     lateness).
//   - TestFaultsMidCampaign: during a 100,000-device campaign, kill -9 of the
//     dispatcher, a Kafka broker restart and 10 s of 503s: every live device
//     delivered, duplicates within the dispatcher's bound, ClickHouse and
//     MySQL as without faults.
//   - TestCancelMidCampaign: no more sends accepted later than 2 s after the
//     cancel is acknowledged than the chunks already in flight; every
//     planned device ends delivered or cancelled (or dead, suspect or
//     invalid, as its token makes it), nothing failed or expired.
//   - TestBadInputIsDeadLetteredAndTheNextCampaignServed: garbage,
//     schema-invalid JSON, an unknown app and huge campaigns are
//     dead-lettered with their reason and bytes, and the valid campaign
//     behind them is delivered.
//   - TestScaleOut: two instances of each stage share the partitions;
//     stopping one of each mid-campaign hands everything to the others with
//     nothing lost and nothing sent twice.
//
// TestFaultsMidCampaign restarts Kafka through testenv.StackCtl, which waits
// until no other test process uses the stack and keeps it until the test
// ends (see internal/testenv).
//
// BenchmarkEndToEnd is the headline benchmark; scripts/bench-e2e runs it.
package e2e
