// Package delay builds delayed delivery on Kafka, which has none: a ladder
// of fixed-delay topics feeding the ready topic, and the Forwarder that
// moves batches down it.
//
// # Why a ladder of fixed-delay topics
//
// Tier k (topic <delay>.tNN) delays every record by the same 2^k seconds,
// so within one tier partition the due time, record timestamp + 2^k s, never
// decreases with the offset: the head of a partition is always the next
// record due. A consumer therefore needs no index and no timers per record:
// it pauses the partition (franz-go PauseFetchPartitions) until the head is
// due. The alternatives were weighed in /work/shared/design/scheduling.md: a
// consumer-side timer index pins the committed offset at the earliest
// unfired record and holds state per pending batch (memory grows with the
// backlog; a restart re-reads days); a compacted schedule topic with
// in-memory timers suits a few campaigns, not millions of batches; broker
// delays (KIP-1277) do not exist. Spring Kafka, uForwarder and Karafka use
// the same pause-per-partition shape.
//
// # Routing (Ladder.Route)
//
// With r = send-at - now: r < ReadyWithin (1 s) goes to the ready topic
// (the dispatcher waits out the remainder, so nothing is sent early);
// otherwise tier k = min(floor(log2 r), K-1). The chosen delay is at most
// r, so a batch is never made due after its send-at by the ladder itself.
// Tier topics use LogAppendTime (pipeline/kafka.Layout), so due times come
// from the broker's clock, immune to producer clock skew, and monotonic per
// partition. The send-at header never changes; the hop header counts
// re-writes.
//
// # The forwarder
//
// One consumer group (<group_prefix>-delay) over all tiers, read
// read_committed: a batch of a planner chunk that aborted is never
// forwarded (the dispatcher's doc says why that matters). For each
// partition it holds the fetched records in offset order. Every poll it
// forwards each record whose due time has passed to Route(send-at, now) —
// a lower tier or ready — with the hop count incremented; a batch whose
// expires-at has passed, or whose campaign the control view reports
// cancelled, goes straight to ready instead, where the dispatcher writes one
// expired or cancelled result per device (so every device of such a batch
// gets exactly one result, from one place). A record replayed by hand
// without headers or key (kcat, kafka-console-producer) is forwarded with
// them restored from its value (Scheduled: send_at, expires_at,
// campaign_id, and the batch id as its key); it comes due on its tier's
// delay alone, and Route, reading the value's send_at, never makes it
// early. Only a record with no readable send-at in its headers or its value
// is dead-lettered. Forwards are produced idempotently with
// acks=all; a record is marked for commit only after its forward is
// acknowledged, in offset order (AutoCommitMarks, committed every second,
// on revoke and at shutdown). A forward that fails holds its partition (the
// records behind it wait; the other partitions do not, though its rounds
// slow them, see Bounds): it is tried again on its own after a pause that
// grows from 100 ms to 10 s, and not before it is due, and one its
// destination refuses outright (too large, invalid) is dead-lettered with
// the broker's reason. A partition is paused while its head fails, or while
// its head or its last held record is more than Prefetch (1 s) from due
// (records go in offset order, and DueAt can make a head due after the
// records behind it), resumed Prefetch before both are due, and the
// poll's deadline is the next due time, so the forwarder sleeps in the
// poll, never holding a record past due by more than a poll wake-up.
//
// # Bounds
//
//   - Never early: a batch reaches ready at most ReadyWithin before its
//     send-at (each hop's delay is at most the remaining time); the
//     dispatcher's guard waits out that last second.
//   - No head-of-line blocking: within a tier partition due order is
//     offset order (up to a clock skew's wait, see Rewrites: at most
//     MaxSkewHold, 30 s, behind a record the planner or a retry wrote, and
//     behind a forwarded one the skew of the forwarder or dispatcher that
//     wrote it, up to MaxForwardedHold, an hour: clocks in sync keep it to
//     milliseconds, but a ladder grown since holds its former top tier's
//     looped records up to the hour too; pushctl dlq redrive writes a tier
//     record where the planner would), so the head being
//     not yet due means nothing behind it is due either. A batch due now is
//     written straight to ready.
//   - Lateness: a hop adds one produce and one fetch (FetchMaxWait bounds a
//     fetch of a just-resumed partition; Prefetch resumes it early), well
//     under a second in total under normal load. After an outage: the
//     outage plus catch-up, in due order.
//   - Rewrites: if 2^k <= r < 2^(k+1), after the wait r < 2^k, so every
//     hop strictly lowers the tier: at most K hops within the ladder's
//     reach (2^K - 1 s), plus one top-tier loop per 2^(K-1) s beyond it.
//     With the default 22 tiers the reach is 48 days, so a 30-day horizon
//     takes at most 22 rewrites (about 11 on average). The due times are
//     the broker's and Route reads the forwarder's clock, so a forwarder
//     ahead of the broker would find a record due while Route still picked
//     its tier: it waits instead (DueAt) until send-at is less than the
//     tier's delay away, which keeps the bound. For a record a forwarder
//     wrote (hop 1 or more) that wait is less than the forwarder's skew,
//     and it is allowed up to MaxForwardedHold (an hour); a forwarder
//     further ahead would re-write low-tier records in a loop, so clocks
//     must be kept in sync (NTP). A record that would wait longer, or one
//     the planner or a retry wrote (hop 0) that would wait more than
//     MaxSkewHold (30 s), does not fit its tier (a writer's clock far
//     ahead, a hand-written record, a ladder grown since: a former top
//     tier's batches are days away) and is re-written by Route at once to
//     the tier it fits, rather than holding its partition.
//   - Re-forwards: a crash or an ungraceful rebalance re-forwards what was
//     forwarded but not yet committed (marks are committed every second,
//     so about a second's worth per partition). A graceful rebalance or
//     stop commits every record forwarded up to the first one that was
//     not, but never past it (a partition commits one offset): the records
//     forwarded behind a head that is still failing stay uncommitted, and
//     the next owner forwards them again (so does a restart after a
//     crash): at most what the partition held when its head failed (about
//     one fetch). The dispatcher skips finished batch ids, so a re-forward
//     is never sent twice.
//   - Memory: per partition, the records due within Prefetch plus one fetch
//     (FetchMaxPartitionBytes, 1 MiB by default); paused partitions buffer
//     nothing more, and a partition whose head waits (DueAt, up to an hour)
//     or fails is paused, whatever is due behind it. It does not grow with
//     the number of pending batches, which live in Kafka.
//   - Restarts and rebalances: no state outside Kafka. A new owner fetches
//     from the committed offset and recomputes due times from record
//     timestamps; overdue records flow out at once, in due order.
//   - Open transactions: the forwarder reads read_committed, so a tier
//     partition's records behind a planner transaction still open wait
//     for it to end, other campaigns' batches included. A planner commits
//     a chunk every BatchesPerTransaction batches or a quarter of its
//     transaction timeout (10 s by default); a planner that dies mid-chunk
//     holds them until the broker aborts its transaction (40 s).
//   - A destination partition without a working leader (or a dead-letter
//     topic that cannot be written): the records bound for it fail, stay
//     held at the head of their tier partitions, holding the records
//     behind them there, and are retried with their partition's backoff
//     (up to 10 s). Every other partition slows too, since forwards run in
//     rounds on the poll goroutine and a round waits for all of its
//     acknowledgements: up to 5 s (forwardRound) for a record it cannot
//     send, as long again for dead letters it cannot write, and up to the
//     client's delivery timeout (30 s) for a produce already sent that the
//     broker never answers. While the destination is down, each round with
//     a forward or a retry bound for it lasts that long, and retries
//     follow each other from 100 ms apart, so a record of any partition
//     falling due during such a round waits for the next: up to about 5 s
//     late (10 s with dead letters), 30 s at worst.
//
// # Deployment
//
// cmd/dispatcher runs the forwarder beside the dispatcher by default
// (-mode all), so a single binary is a complete deployment; -mode delay
// runs only the forwarder, -mode dispatch only the dispatcher.
//
// The number of tiers can change while batches wait. A forwarder also reads
// the tier topics above its ladder's top that exist on the cluster, each as
// the tier its name says, so lowering delay.tiers strands nothing; raising
// it leaves the former top tier's far batches misfits, which DueAt takes at
// once and Route re-writes to the tier they fit.
package delay
