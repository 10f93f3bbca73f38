// Package feedback is the last stage: it consumes result events
// (pushlane.results) and device registrations
// (pushlane.device-registrations) in group <prefix>-feedback, keeps the
// MySQL devices table clean, and writes one analytics row per result.
//
// # Flow and commits
//
// Records are buffered until FlushRows records or FlushInterval. A flush
// (1) produces dead letters for malformed events, (2) applies the MySQL
// changes (Store), (3) writes the rows (Sink), and only then (4) commits the
// records' offsets. A failing step is retried with doubling, jittered
// backoff (MinBackoff..MaxBackoff) and is never skipped; nothing is polled
// meanwhile, so results wait in Kafka while ClickHouse or MySQL is down and
// /readyz reports the failing step. Auto-commit is off and rebalances are
// blocked while records are held (kgo.BlockRebalanceOnPoll): the client is
// allowed to rebalance only with an empty buffer, so a revoked partition
// never has uncommitted work here. On cancel, Run flushes and commits what
// it holds. Every step is replay-safe, so at-least-once delivery (a crash
// after a write and before the commit) changes nothing downstream. The
// dead-letter step's retry writes only the letters not written yet, and a
// letter the broker refuses outright (too large for the dead-letter
// topic) is not retried: it is written slimmed, and as a last resort
// dropped, counted in pushlane_feedback_dead_letters_dropped_total and
// logged as an error with its topic, partition and offset (the event
// stays on its topic), so it cannot hold the group's partitions.
//
// # Token hygiene (MySQL)
//
// Feedback records each device's evidence and derives the device's state
// from all of it, so the events of a device applied in any order, in any
// flushes, or replayed end in the same state:
//
//   - token_dead results are deaths (reason = the provider's: Unregistered,
//     ExpiredToken, UNREGISTERED, INVALID_ARGUMENT — the provider
//     classifies only the token-invalid INVALID_ARGUMENT as token_dead). The
//     evidence time is APNs' 410 timestamp for Unregistered, the result's
//     time otherwise. device_deaths keeps the latest death per device (a
//     tie goes to the greater reason), and the latest unregister.
//   - token_suspect results (BadDeviceToken, DeviceTokenNotForTopic,
//     SENDER_ID_MISMATCH) are quarantined as strikes in device_strikes,
//     keyed (app, token, result_id), so a replayed result is one strike.
//   - Registrations upsert the device: registered_at = max(stored, event);
//     the profile (platform, user, locale, timezone) follows the newest
//     registration, as it gives it: a user_id, locale or timezone it
//     leaves out or sends empty is cleared (an install registering again
//     after a logout, without a user, no longer carries the old one); an
//     older registration changes none of it. unregister: true is an
//     unregister at the event's registered_at; it leaves the profile as
//     it is. A registration whose registered_at is outside
//     1970..9999 in UTC, or more than a day ahead of the instance's clock
//     (such a device could never be deactivated), is dead-lettered.
//   - A device is inactive when, against its registered_at, its latest
//     death is newer, its latest unregister is at the same time or newer,
//     or feedback.suspect_strikes (default 3) of its strikes are newer;
//     active otherwise. So a token the app re-registered after the evidence
//     stays or becomes active, a re-registration starts the strike count
//     again, and a replayed old registration never revives a dead token.
//     deactivated_at and deactivation_reason are those of the latest
//     evidence that applies (reason suspect_strikes at the latest strike;
//     unregistered_by_app), NULL when active. Ties at one millisecond: the
//     registration beats a death or a strike at its own time and loses to
//     an unregister at its own time. suspect_strikes 0 records strikes and
//     never deactivates (report only: query device_strikes); a device is
//     judged on the setting in force the next time an event names it.
//   - Evidence naming a device that devices does not hold is kept, so a
//     registration arriving after evidence newer than it ends inactive, as
//     it would have the other way round. It is counted in
//     pushlane_feedback_unknown_devices_total; results themselves are
//     never checked against MySQL.
//   - Each kind is one statement per flush (chunks of 1000 rows), never
//     read-then-write: an INSERT … ON DUPLICATE KEY UPDATE keeping the
//     maximum (registrations, evidence, strikes) and, for deaths,
//     unregisters and strikes, a conditional UPDATE that deactivates and
//     counts for the metrics; then the reconcile, two UPDATEs per app that
//     derive the state of every device the flush named (ReconcileSQL).
//     Every writer reconciles after its writes, so of two instances writing
//     about one device at once, the later reconcile sees both.
//   - invalid_token results (the planner's) only become analytics rows.
//
// The SQL works on MariaDB, MySQL 8 and go-mysql-server (the demo's store);
// TestStoreOnGoMySQLServer and TestIntegrationStoreOnMariaDB run the same
// cases on both. An app backend that cannot produce to Kafka can run the
// registration upsert itself, with registered_at in UTC (the column's
// default, CURRENT_TIMESTAMP(3), is in the session's time zone, so a row
// inserted without it is off by the server's offset) and NULL for a
// user_id, locale or timezone the registration does not give:
//
//	INSERT INTO devices (app, token, platform, user_id, locale, timezone, registered_at, active)
//	VALUES (?, ?, ?, ?, ?, ?, ?, 1)
//	ON DUPLICATE KEY UPDATE
//	  platform = IF(VALUES(registered_at) >= registered_at, VALUES(platform), platform),
//	  user_id = IF(VALUES(registered_at) >= registered_at, VALUES(user_id), user_id),
//	  locale = IF(VALUES(registered_at) >= registered_at, VALUES(locale), locale),
//	  timezone = IF(VALUES(registered_at) >= registered_at, VALUES(timezone), timezone),
//	  registered_at = GREATEST(registered_at, VALUES(registered_at));
//
// or, to unregister, record it:
//
//	INSERT INTO device_deaths (app, token, unregistered_at) VALUES (?, ?, ?)
//	ON DUPLICATE KEY UPDATE
//	  unregistered_at = IF(unregistered_at IS NULL OR VALUES(unregistered_at) > unregistered_at, VALUES(unregistered_at), unregistered_at);
//
// and in both cases then reconcile the device (app, token) with the two
// statements below, where L stands for the latest evidence that applies to
// it, here for suspect_strikes 3 (for 0, L is the outer GREATEST(…) alone,
// without the strike count):
//
//	COALESCE(
//	  GREATEST((SELECT IF(COUNT(*) >= 3, MAX(s.at), NULL) FROM device_strikes s WHERE s.app = d.app AND s.token = d.token AND s.at > d.registered_at),
//	    COALESCE(
//	      GREATEST(COALESCE(IF(e.died_at > d.registered_at, e.died_at, NULL), IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL)),
//	        COALESCE(IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL), IF(e.died_at > d.registered_at, e.died_at, NULL))),
//	      (SELECT IF(COUNT(*) >= 3, MAX(s.at), NULL) FROM device_strikes s WHERE s.app = d.app AND s.token = d.token AND s.at > d.registered_at))),
//	  GREATEST(COALESCE(IF(e.died_at > d.registered_at, e.died_at, NULL), IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL)),
//	    COALESCE(IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL), IF(e.died_at > d.registered_at, e.died_at, NULL))))
//
// An inactive device whose deactivation no recorded evidence reaches (set
// by the backend's own UPDATE, or by an operator) is left as it is until a
// registration newer than its deactivation; one set inactive without a
// deactivated_at, for good:
//
//	UPDATE devices d LEFT JOIN device_deaths e ON e.app = d.app AND e.token = d.token
//	SET d.deactivated_at = L, d.active = IF(L IS NULL, 1, 0)
//	WHERE d.app = ? AND d.token IN (?)
//	  AND (d.active = 1 OR d.registered_at > d.deactivated_at
//	    OR e.died_at >= d.deactivated_at OR e.unregistered_at >= d.deactivated_at
//	    OR EXISTS (SELECT 1 FROM device_strikes s WHERE s.app = d.app AND s.token = d.token AND s.at = d.deactivated_at));
//	UPDATE devices d LEFT JOIN device_deaths e ON e.app = d.app AND e.token = d.token
//	SET d.deactivation_reason = CASE WHEN d.deactivated_at IS NULL THEN NULL
//	    WHEN IF(e.died_at > d.registered_at, e.died_at, NULL) = d.deactivated_at THEN e.death_reason
//	    WHEN IF(e.unregistered_at >= d.registered_at, e.unregistered_at, NULL) = d.deactivated_at THEN 'unregistered_by_app'
//	    ELSE 'suspect_strikes' END
//	WHERE d.app = ? AND d.token IN (?)
//	  AND ((d.active = 1 AND d.deactivation_reason IS NOT NULL) OR d.deactivated_at = L);
//
// (RegisterSQL, EvidenceSQL and ReconcileSQL build exactly these, batched,
// with L written out; TestDocSQLIsWhatTheStoreRuns holds them to it.)
//
// # Analytics (ClickHouse)
//
// Every result, whatever its outcome, is one row of <database>.results
// (schemas/clickhouse/0001_results.sql), inserted with one native
// PrepareBatch per flush with an explicit column list. The table is a
// ReplacingMergeTree(version) ordered by (campaign_id, result_id) and
// partitioned by the month of the result's own time, so a replayed row
// lands in the same part key and merges keep one; until they do, queries
// dedupe: Summary and the analyst queries in schemas/queries keep one row
// per result_id in a subquery, the copy of the latest send (argMax by
// version; the version is derived from the result, its time in
// milliseconds × 1000 plus a content hash below 1000, plus 2^62 for a
// provider's answer that ended the attempt (not retryable), so a
// cancelled or expired copy written after a crash never replaces it;
// never from the insert, so insert order, batching and which feedback instance inserted
// a copy do not matter), and filter after that, never FINAL with a WHERE. Avoided for ClickHouse
// 18.16: TTL, CODEC, DateTime64 (times are DateTime seconds; latency and
// lateness keep milliseconds as Float64), Map, LowCardinality, skipping
// indexes, window functions, WITH t AS (subquery), string-valued settings,
// async inserts and INSERT through Exec (it hangs).
//
// "Sent" counts the attempts that reached a provider: rows with a provider
// and the provider's HTTP status (provider is not empty and status is not 0).
// Expired, cancelled and invalid_token results, devices whose platform the
// app has no provider for, payloads refused by local validation and
// transport errors are not sent, nor in the latency and lateness quantiles.
//
// The Sink interface lets the embedded demo run without ClickHouse:
// FileSink writes JSON lines, each flush whole in one write, undoing a
// failed write so that the retry writes the flush once; on open it cuts a
// torn last row left by a killed process, and ReadRows skips torn rows
// (ReadRowsFrom counts them). Accumulator keeps an in-memory summary,
// keeping each result id's highest-version copy as ClickHouse does; both
// count each result id once. Summary (ClickHouse) and
// Accumulator.Summary compute the same CampaignSummary; WriteSummary prints
// it for `pushctl stats`.
//
// # Bad input
//
// A result or registration that fails its JSON Schema, or that the stores
// cannot hold, is dead-lettered with the reason before its offset is
// committed: a result with a time outside 1970..2105 (ClickHouse's
// DateTime); a registration whose app or token is not ASCII or longer than
// the devices columns (64 and 512 bytes), or whose registered_at is out of
// range. A dead letter is at most pipeline/kafka.MaxDeadLetterBytes: a
// value too big keeps only its head, and the original's key and headers
// are left out as needed, the letter's reason and its
// pushlane-dead-letter-slim header saying so. A result's token is not
// checked against the devices columns: the result is still a sound
// analytics row, and a death or strike whose token no device can have (not
// ASCII, longer than 512 bytes) only counts as an unknown device. Valid
// results are decoded on a fast path that accepts only what the schema
// accepts, falling back to schemas.DecodeResult.
package feedback
