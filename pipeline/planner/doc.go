// Package planner turns campaigns into batches: it consumes the campaigns
// topic as the group <group_prefix>-planner, streams each campaign's
// audience from MySQL, and produces batch events onto the delay ladder
// (delay.Ladder.Route, delay.BatchRecord), invalid-token results onto the
// results topic, and bad campaigns onto the dead-letter topic.
//
// # Audience
//
// Devices are read by keyset pagination on the primary key: a page is the
// next page_size ids after the last one read (WHERE app = ? AND active = 1
// AND id > ? ORDER BY id LIMIT ?, from the (app, active, id) index alone),
// then the rows of that id range, along the primary key where the app's ids
// are dense and through the index where they are sparse (store.go says
// why). Each page is a bounded range read that starts where the last one
// ended, so a 10-million-device campaign holds a few pages in memory, never
// the audience. Explicit lists (tokens, user ids) are read in parts of 500
// entries, each part in id order; a Position (part, id) orders the whole
// audience. A listed token no device can have (not ASCII, or longer than
// devices.token's 512 bytes) is left out of the queries, since MariaDB and
// MySQL 8 refuse to compare a non-ASCII value with the ascii_bin column;
// it is logged and counted (pushlane_planner_unstored_tokens_total), not
// reported as an invalid_token result, which names a device's platform.
// A reader goroutine fills pages ahead of the planner loop
// through a channel of three pages, so MySQL reads overlap with encoding
// and producing; rows are copied into a reused per-page arena and each
// device is encoded to JSON once, into its wave's open batch.
//
// # Batches and waves
//
// Mode "at" has one wave. Mode "local_time" groups devices by the UTC
// offset their IANA zone (or the campaign's default_timezone, or UTC, for
// a device without a valid one) has at local_time on local_date: that
// offset is exactly what decides the send-at, so zones that share it
// (Europe/Berlin and Europe/Paris) share batches and throttle. DST is the
// zone database's: 09:00 in Berlin is 07:00Z on the last Sunday of March
// and 08:00Z on the last Sunday of October. A local time that does not
// exist (in the spring-forward gap) moves forward by the gap; one that
// happens twice is its first occurrence. Waves are named "UTC+05:30".
//
// The audience is streamed once in position order; each wave keeps one open
// batch (so memory is bounded by waves × batch size) and emits it when it
// holds batch_size devices (default 1000), or earlier if its JSON would
// pass MaxBatchBytes. Batch ids are "<campaign>:v<version>:<wave>:<seq>"
// ("all" for the wave of mode "at"): replays and resumed plans produce the
// same ids, so later stages drop duplicates by id.
//
// # Time
//
// A wave is due at its nominal time, or at the planning start if that has
// passed (a send-at in the past is due now; so is a local-time wave whose
// 09:00 came earlier today). The throttle R is the campaign's, so it spaces
// the batches of all the waves due at one instant together: every wave
// whose local time had passed is due at the planning start, and six of
// them throttled each on its own would send 6·R a second. The batch cut
// after n devices of the waves sharing start is due at start + n/R
// seconds, which is start + i·B/R for full batches: R sends a second on
// average, and since a whole batch is due at once, fewer than R·T + B in
// any T seconds (one batch a second, more than R, when B > R). Instants
// are throttled separately; their batches overlap only when one instant's
// run past the next. Expiry: expires_at, or else ttl_seconds after each
// batch's send-at, is carried into every batch. A campaign whose
// expires_at is not after the planning start (or, with only a TTL, whose
// TTL ran out before it) is recorded as expired and not planned; in a
// local-time campaign, a wave that would start at or after expires_at is
// skipped and its devices are counted as expired. So is a batch whose
// throttled send-at would be at or after expires_at, with every later one
// of its start instant (their send-ats only grow, so the batches then
// open in the instant's other waves go too): emitted, it was routed by its
// send-at and found expired only when due, hours later maybe, its devices
// counted as planned. Expired devices are counted (the campaign row's
// expired_devices, pushlane_planner_expired_devices_total), with no
// result. Whether an instant has run out follows from its devices sent,
// which the checkpoint holds, so a resumed plan skips the same batches.
//
// # Transactions and checkpoints
//
// The planner uses a franz-go GroupTransactSession. A big campaign cannot
// sit in one transaction (the broker's 40 s timeout; a million devices are
// 150 MB), so it is planned in chunks of batches_per_transaction batches,
// one transaction each. A chunk also ends after as many devices' worth of
// work that made no batch (invalid tokens, expired devices), and once its
// transaction is a quarter of the transaction timeout old (10 s by
// default); one holding records ends so also while the planner waits for a
// MySQL page: a page read may take up to its one-minute query timeout, and
// a transaction open over it would hold back the last stable offset of
// every partition it wrote to (read_committed readers, other campaigns'
// due batches among them, wait behind it) until the broker aborted it. The
// page then goes into the next chunk, as after a checkpoint taken
// mid-page. Each chunk's transaction commits, together with its batches,
// the campaign partition's group offset:
//
//   - an intermediate chunk commits the campaign record's own offset, with
//     the campaign's checkpoint as the offset's metadata;
//   - the last chunk does the same with a final checkpoint (every batch
//     emitted, the totals);
//   - then the campaign is recorded in MySQL, and a transaction of no
//     batch commits the offset after the record, with empty metadata. A
//     record polled again with a final checkpoint is only recorded and
//     committed past.
//
// So the checkpoint and the batches it accounts for become visible
// atomically, to read_committed consumers and to the group: a planner
// killed mid-campaign (or a partition moved by a rebalance) leaves an
// aborted chunk that no read_committed reader sees, and whoever owns the
// partition next polls the campaign record again, finds the checkpoint in
// the committed offset's metadata (delivered with every assignment's
// offset fetch) and resumes exactly after the last committed chunk. No
// extra topic is needed, and the checkpoint can never disagree with the
// offset. Kafka's offset.metadata.max.bytes (4096 by default) bounds it;
// a checkpoint is a few hundred bytes plus about 40 per wave, and
// local_date must be 1970 or later so waves stay a few dozen.
//
// A stop commits the open chunk with a checkpoint, at a page boundary; a
// stop that comes before the attempt has read a device (while the control
// view catches up, the replay check runs or the first page is read)
// commits nothing, and the next owner handles the record as it finds it:
// a campaign with no checkpoint starts afresh, with its own planning
// start, and is recorded as expired if it expired meanwhile.
//
// A checkpoint holds the planning start (so resumed send-ats are the same
// instants), per wave the next seq, the devices emitted (summed per start
// instant for throttle spacing) and the position of the wave's last
// emitted device, and the position to read again from: just before the
// first device still in an open batch. Devices read again that a wave had
// already emitted are skipped; invalid tokens and expired devices up to
// the checkpoint's scanned position were already reported and are not
// reported twice.
// Positions are exact because the audience order is the primary key; a
// device whose timezone changes between a crash and the resume may be
// sent in both waves or in neither, like any row changed during a keyset
// scan.
//
// Only the campaign's own partition is committed in a transaction: other
// records polled with it are not finished, and a commit hook
// (kgo.PreTxnCommitFnContext) keeps them out of the commit.
//
// # Replays
//
// A campaign record polled without its checkpoint is new, or a replay:
// the same record published again, or the topic re-read (pushctl replay,
// an offset reset). Planned again from the start, a replay's batches
// would be due now; the dispatcher drops batch ids it finished, but keeps
// them only ProgressRetention (35 days by default), and an audience grown
// since makes batch seqs it never saw, so devices registered after the
// plan would get a weeks-old campaign. So before planning from the start the
// planner reads the campaign's rows in MySQL (LatestCampaign): when its
// version is recorded as planned, cancelled or expired, or a newer
// version has a row, the record is committed past with nothing produced
// and nothing written, logged and counted
// (pushlane_planner_replays_skipped_total). The row is written only
// once every batch it counts is committed (for a plan, after the last
// chunk, above): a crash or an abort before leaves no row, and the
// record resumes from its checkpoint or plans again. A version recorded
// as failed is handled again. Each version is its own plan: a newer one
// plans its whole audience under new batch ids, and the older version's
// batches stay as they were.
//
// Upgrading from a planner that wrote the planned row inside the last
// chunk's transaction (before this order): a campaign whose last chunk
// that planner wrote the row for and then saw aborted (a rebalance during
// the rolling upgrade) has a row and no batches, and the new planner skips
// it. Roll the planner while it plans nothing (its group has no lag on the
// campaigns topic), or check `pushctl stats` of the campaigns planned
// during the roll against their audience.
//
// # Failures
//
// A record that does not decode, fails its schema, names an unknown app or
// has an unplannable schedule is dead-lettered (with the reason and the
// original bytes) in the transaction that commits past it; a decodable one
// is also recorded in MySQL as failed. A MySQL error (the audience read,
// the read of the campaign's row or the bookkeeping) aborts the open
// chunk (or an empty transaction, whose abort rewinds the session to the
// committed offsets); the campaign is polled again after a backoff
// (RetryMin doubling up to RetryMax) and resumes from its last
// checkpoint, for as long as MySQL stays down. A rebalance aborts the
// open chunk the same way, re-polled at once; so does a group coordinator
// that turns the chunk's offset commit away, and a run of such aborts with
// no chunk committed in between is re-polled after the same backoff. A Kafka session that fails is replaced.
//
// # Cancellation
//
// Before a campaign starts the planner lets the control view catch up to
// now and skips a cancelled campaign; while planning, it checks the view
// before every checkpoint and after every page. A cancelled campaign's
// open chunk is aborted, and it is recorded as cancelled with what earlier
// chunks emitted; later stages drop those batches.
package planner
