// Package dispatcher sends the batches of the ready topic through APNs and
// FCM and writes one result event per device and attempt.
//
// # Flow
//
// A consumer group (<group_prefix>-dispatcher) reads the ready topic with
// BlockRebalanceOnPoll. Each assigned partition has one worker that starts
// its records in offset order, up to PartitionConcurrency (4) of them
// sending at once, and marks them for commit only as a contiguous prefix;
// a batch waiting for its send-at takes no send slot, so a due batch is
// never held up behind one that is not (up to PartitionWindow, 64, started
// per partition). Two copies of one batch id (same key, same partition)
// never run together: a copy reaching the head while its twin is in flight
// (a re-forward after a crash or a lost session, a batch released twice)
// is set aside, keeping its place in the commit order but taking no send
// slot, and the records behind it start; once its twin finishes it is
// handled like any record (and skipped as finished), so a duplicate never
// holds up the batches behind it. A partition is paused while its worker has a
// backlog, so polling never blocks. For each record:
//
//  0. A record without a key (replayed by hand: kcat without -K,
//     kafka-console-producer without parse.key) is written back to the
//     ready topic keyed by its batch id, as the planner keys it (the
//     batch-id header, else the value's id), with any scheduling header
//     it lacks restored from its value, and is done with. The keyed copy
//     lands on the partition of the batch's other copies, where the
//     same-key guard keeps them apart; sent where it was read, it could
//     run beside a copy in flight on another partition. Until then the
//     guard knows a keyless record by that batch id too.
//  1. Decode (schemas.DecodeBatch). A malformed batch, or one of an app this
//     dispatcher has no senders for, is dead-lettered with the reason.
//  2. Skip it if the progress store says its id is finished: a replayed
//     ready topic, a re-forwarded or re-released batch sends nothing.
//  3. A batch more than delay.ReadyWithin ahead (clocks that disagree, or a
//     record replayed without headers) goes back to the ladder, with the
//     key and scheduling headers the planner gives it; one less than that
//     ahead is waited for in place, so nothing is sent before its send-at.
//     A record without headers is waited for by its decoded send_at,
//     expiry and campaign, as one with them is by its headers.
//  4. Before every chunk: the control view must have applied every control
//     record acknowledged MaxStaleness (1 s) ago (else wait); a cancelled
//     campaign or an expired batch gives each device without a result a
//     cancelled / expired result and sends nothing (also when its send-at
//     is still ahead); a paused campaign parks the batch, and so does a
//     halted app if the batch has a device without a result for the
//     refused provider (see Parking).
//  5. Send the next ChunkSize devices without a result, bounded by the
//     app's concurrency and rate: the chunk's devices queue behind those of
//     the app's other chunks, and a sender that finishes a send takes the
//     next one with its slot (no hand-off through the batch's goroutine,
//     which on one core waits behind a whole burst of answers). A device
//     whose turn comes after its campaign was cancelled or paused, or its
//     batch expired, is not sent; the check of step 4 then closes the
//     batch out or parks it. The same holds inside the sender, which
//     may hold a send further (its own concurrency, FCM's project quota,
//     an access token): it asks the batch's gate (providers.WithSendGate)
//     after each of its waits and right before it writes the request,
//     and the gate also withdraws the send once the dispatcher is
//     stopping or a halt holds the device's provider; a withdrawn device
//     gets no result and stays pending, and a request already written is
//     never cut short. Content is
//     encoded once per batch,
//     platform and locale text (providers.BatchSender.Prepare), not per
//     device. Write their results (idempotent producer, key app/token,
//     deterministic ResultID) and wait until all are acknowledged; then
//     save the batch's progress (which devices are done, which wait for a
//     retry).
//  6. Devices whose outcome was retryable form one retry batch,
//     <batch id>#a<attempt+1>, due after providers' backoff (never before
//     the provider's Retry-After), written to the delay ladder: nothing
//     sleeps while holding a partition. A retry that would be due at or
//     after the batch's expiry can never be sent: it is due at the expiry
//     instead, reaches the ready topic then, and its devices get their
//     expired results (attempt+1) at the expiry, not when the backoff's
//     tier would have let it out (the ladder looks at expires-at only when
//     a record comes due). On the last attempt (MaxAttempts) they get the
//     outcome failed instead.
//  7. Record the batch finished, then mark the ready record for commit
//     (committed every second, on revoke and at shutdown).
//
// # Duplicates
//
// Progress is saved after each chunk's results are acknowledged, and the
// ready record is committed only after the batch is finished. A graceful
// stop or rebalance lets each worker finish the sends in flight, write
// their results and save progress, starts nothing more (sends still
// waiting inside a sender are withdrawn), and commits what is finished;
// the next owner re-reads the rest and sends only the devices without a
// result: zero duplicates. The group's rebalance timeout covers the
// longest revoke (the senders' request timeout × 17/16, FinishTimeout,
// the commit): a member that took longer would be evicted with its last
// chunks unsaved, and their devices sent again. After kill -9, the devices
// of the chunk each batch had in flight may be sent again (at most
// ChunkSize per sending batch: PartitionConcurrency × ChunkSize per
// partition); their results carry the same ids. Finished ids are kept
// for ProgressRetention (35 days by default).
//
// The ready topic is read read_committed. The planner writes batches in
// transactions and re-plans an aborted chunk under the same ids; if the
// audience changed in between (feedback deactivated a token), the re-plan
// cuts its batches differently, and sending the aborted one would make the
// finished-id check skip the committed one: devices lost at the batch
// edges, others sent twice.
//
// # Why MySQL for progress
//
// Progress must survive kill -9 and be visible to whichever instance owns
// the partition next; MySQL is already part of the deployment (planner,
// feedback), answers a point lookup per batch, and lets old ids be deleted
// by time. A compacted Kafka topic co-partitioned with ready would have to
// be read back into memory on every assignment, growing with the number of
// finished batches kept for replay protection.
//
// # Parking: paused campaigns and halted apps
//
// A parked batch is neither sent nor dropped: its record is stored in the
// dispatch_parked table (keyed and with its scheduling headers, restored
// from the batch if it came without) and the ready record is committed, so
// other campaigns and apps on the same partitions keep flowing. Every instance
// re-checks parked batches each ParkInterval and writes one back to the
// ready topic when its reason clears: the campaign is resumed (or
// cancelled, or the batch expired — the dispatcher then writes those
// results). Progress is kept, so a batch parked mid-way resumes with the
// devices still without a result.
//
// A credential failure (providers.CredentialFailure: a refused key,
// certificate or service account) halts the app for the refused provider
// in every instance (dispatch_halts table, providers.Halt registry, the
// alert log line and the pushlane_provider_app_halted{app,provider} gauge,
// 1 for the whole halt). The failed devices get no result; the batch is
// parked. The halt holds back only what needs its provider: a batch with
// a device without a result for that provider is parked (or probes,
// below); a batch whose pending devices all go to the other provider is
// sent as usual. An app whose
// APNs key is refused still sends its Android-only campaigns through FCM,
// whose credentials nothing refused; holding them too parked them until
// an iOS batch came along to probe with, and without one (the iOS
// batches cancelled or expired) for ever, or until their expiry.
//
// FCM's sends to iOS devices need a second credential: the APNs key
// uploaded to the Firebase project, which Apple refuses as FCM's
// THIRD_PARTY_AUTH_ERROR (APNS_AUTH_ERROR) on iOS devices alone. That
// refusal halts only the app's FCM sends to iOS devices, under the
// provider fcm-via-apns (ProviderFCMviaAPNs; in the halts table, the
// gauge and the alert): its Android devices need no APNs key and go on,
// as they do through an APNs halt (a batch with both kinds of device is
// held whole, as one of both providers is, below), and its probe is an
// iOS device sent through FCM. Halted as FCM, an app sending iOS through
// FCM had its Android campaigns parked too, and a probe delivered to an
// Android device lifted the halt until the next iOS send halted it
// again, every probe interval. A refused service account (a 401 that a
// fresh access token does not cure, 403, 404, the token endpoint's
// refusal) still halts all of the app's FCM sends; a probe of that halt
// answered with THIRD_PARTY_AUTH_ERROR got past the service account, so
// it lifts the FCM halt, and the next iOS send records the APNs key's.
//
// A batch with devices of both providers is held whole, not split into
// the other provider's devices sent and the rest parked. Its retryable
// devices form one retry batch, written once when the batch finishes,
// under an id fixed by the batch's; a split batch would hold its FCM
// retries until the APNs halt ends anyway (writing them earlier would
// make a second retry batch under the same id, which the finished-id
// check drops). Held whole, a batch is either flowing or parked, and a
// batch parked for the halt has a device the probe can try (unless the
// other provider refused too, below). The cost: a mixed batch's FCM
// devices wait for the APNs fix (or the batch's expiry).
//
// The senders' registry is per app and provider, as credentials are:
// while an app is halted for APNs its APNs sender refuses every send
// without calling Apple (so the rest of a chunk fails fast after a
// refusal), and its FCM sender, asking only about FCM, sends as usual.
// The dispatcher holds the refused provider's devices back itself too,
// before each chunk and in a chunk cut before it saw the halt; a send the
// registry refused anyway (the halt came between) leaves its device
// without a result, to be sent by a later chunk, and the batch is not
// parked for it. The registry stays halted for the whole halt, probes
// included: a probe's one send passes it by its context
// (providers.WithProbe), so the gauge and the log ("app resumed") tell of
// a lift only once a probe succeeded or an operator lifted the halt.
//
// If the other provider refuses too, the store keeps the first provider
// (one row per app); the second is halted in the registry of each
// instance that saw it refuse, which then holds that provider's batches
// back as well, parked without a send (an instance parks them after one
// refused send of its own). They claim no probe, having no device of the
// stored provider. When the stored halt is lifted, every instance lifts
// both of the app's providers: nothing would probe or lift the second
// otherwise. Its next refusal halts the app anew, recorded in the store
// this time.
//
// How a halt clears: every HaltProbeInterval (30 s by default) one
// dispatcher claims a probe, takes one held batch of the app and sends
// its first pending device that needs the refused credentials (an iOS
// device for an APNs halt, an iOS device sent through FCM for a halt of
// fcm-via-apns: an Android device's answer says nothing of an APNs key);
// a batch with no such device claims none. If that provider answers and
// accepts the credentials (any outcome but credential_failure) the halt
// is lifted everywhere and the app's parked batches are released;
// otherwise the app stays halted. A probe whose send does not happen or
// is decided without the provider (a stop, its campaign cancelled or
// paused meanwhile, the halt lifted or changed since its claim, a
// payload refused locally) gives its claim back or keeps the app halted,
// so the next one need not wait. Fixing credentials is a config change
// and a restart (for an APNs key in a Firebase project, an upload in the
// Firebase console); the next probe then succeeds. An operator can also
// delete the app's dispatch_halts row. A halt with no held batch left
// stays recorded, holding nothing, until a batch with a device of its
// provider comes and probes.
//
// # Memory
//
// Per partition: the queued records (QueueRecords, 4), the started ones
// (at most PartitionWindow records and PartitionWindowBytes, 4 MiB), of
// which only the PartitionConcurrency (4) sending are decoded; a record
// waiting for its send-at waits on its headers, undecoded (one replayed
// without headers waits decoded, in its send slot, less than
// delay.ReadyWithin). With the default 12 ready partitions that is some
// tens of MiB at most, plus the client's fetch buffers (FetchMaxBytes 16
// MiB). Nothing grows with the number of pending, parked or finished
// batches: those live in Kafka and MySQL.
package dispatcher
