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
// after a write and before the commit) changes nothing downstream.
//
// # Token hygiene (MySQL)
//
//   - token_dead results deactivate the device (reason = the provider's:
//     Unregistered, ExpiredToken, UNREGISTERED, INVALID_ARGUMENT — the
//     provider classifies only the token-invalid INVALID_ARGUMENT as
//     token_dead). The evidence time is APNs' 410
//     timestamp for Unregistered, the result's time otherwise. The device
//     is deactivated only if active and registered_at < evidence time, so a
//     token the app re-registered after it stays active. deactivated_at
//     records the evidence time; newer evidence against a device already
//     inactive moves it (and the reason) forward, so a registration must
//     beat the latest evidence to reactivate it.
//   - token_suspect results (BadDeviceToken, DeviceTokenNotForTopic,
//     SENDER_ID_MISMATCH) are quarantined as strikes in device_strikes,
//     keyed (app, token, result_id), so a replayed result is one strike. A
//     device is deactivated (reason suspect_strikes, at its latest strike)
//     when it has feedback.suspect_strikes (default 3) strikes newer than
//     its registered_at; a re-registration therefore starts the count
//     again, and one older than the last strike reactivates a device the
//     strikes deactivated if fewer than N strikes are newer than it. 0
//     records strikes and never deactivates (report only: query
//     device_strikes).
//   - Registrations upsert the device: registered_at = max(stored, event);
//     the profile (platform, user, locale, timezone) follows the newest
//     registration; an inactive device is reactivated only by a registration
//     newer than both its stored registered_at and its deactivated_at, so a
//     replayed old registration never revives a dead token, while
//     registrations and deaths applied in either order end in the same
//     state. unregister: true deactivates (reason unregistered_by_app) when
//     registered_at <= the event's time. A registration whose registered_at
//     is outside 1970..9999 in UTC, or more than a day ahead of the
//     instance's clock (such a device could never be deactivated), is
//     dead-lettered.
//   - Each kind is one statement per flush (chunks of 1000 rows): a
//     conditional UPDATE joined to a UNION ALL table of (app, token,
//     time, reason) parameters, an INSERT … ON DUPLICATE KEY UPDATE, never
//     read-then-write. A concurrent re-registration is either seen by the
//     UPDATE's registered_at guard or reactivates the row after it.
//   - A death, strike or unregister that names no device is counted in
//     pushlane_feedback_unknown_devices_total; results themselves are never
//     checked against MySQL.
//   - invalid_token results (the planner's) only become analytics rows.
//
// The SQL works on MariaDB, MySQL 8 and go-mysql-server (the demo's store);
// TestStoreOnGoMySQLServer and TestIntegrationStoreOnMariaDB run the same
// cases on both. An app backend that cannot produce to Kafka can run the
// registration upsert itself, with registered_at in UTC (the column's
// default, CURRENT_TIMESTAMP(3), is in the session's time zone, so a row
// inserted without it is off by the server's offset):
//
//	INSERT INTO devices (app, token, platform, user_id, locale, timezone, registered_at, active)
//	VALUES (?, ?, ?, ?, ?, ?, ?, 1)
//	ON DUPLICATE KEY UPDATE
//	  active = IF(VALUES(registered_at) > registered_at AND (deactivated_at IS NULL OR VALUES(registered_at) > deactivated_at), 1, active),
//	  deactivation_reason = IF(VALUES(registered_at) > registered_at AND (deactivated_at IS NULL OR VALUES(registered_at) > deactivated_at), NULL, deactivation_reason),
//	  deactivated_at = IF(VALUES(registered_at) > registered_at AND (deactivated_at IS NULL OR VALUES(registered_at) > deactivated_at), NULL, deactivated_at),
//	  platform = IF(VALUES(registered_at) >= registered_at, VALUES(platform), platform),
//	  user_id = IF(VALUES(registered_at) >= registered_at, COALESCE(VALUES(user_id), user_id), user_id),
//	  locale = IF(VALUES(registered_at) >= registered_at, COALESCE(VALUES(locale), locale), locale),
//	  timezone = IF(VALUES(registered_at) >= registered_at, COALESCE(VALUES(timezone), timezone), timezone),
//	  registered_at = GREATEST(registered_at, VALUES(registered_at));
//
// followed, when feedback.suspect_strikes is not 0, by the strike re-count
// of SuspectReactivateSQL; and, to unregister, by DeactivateSQL and then
// LaterEvidenceSQL with inclusive set:
//
//	UPDATE devices SET active = 0, deactivated_at = ?, deactivation_reason = 'unregistered_by_app'
//	WHERE app = ? AND token = ? AND active = 1 AND registered_at <= ?;
//	UPDATE devices SET deactivated_at = ?, deactivation_reason = 'unregistered_by_app'
//	WHERE app = ? AND token = ? AND active = 0 AND deactivated_at < ? AND registered_at <= ?;
//
// (RegisterSQL and DeactivateSQL build exactly these, batched.)
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
// per result_id in a subquery, the latest copy (argMax by version), and
// filter after that, never FINAL with a WHERE. Avoided for ClickHouse
// 18.16: TTL, CODEC, DateTime64 (times are DateTime seconds; latency and
// lateness keep milliseconds as Float64), Map, LowCardinality, skipping
// indexes, window functions, WITH t AS (subquery), string-valued settings,
// async inserts and INSERT through Exec (it hangs).
//
// The Sink interface lets the embedded demo run without ClickHouse:
// FileSink writes JSON lines, Accumulator keeps an in-memory summary, and
// both count each result id once. Summary (ClickHouse) and
// Accumulator.Summary compute the same CampaignSummary; WriteSummary prints
// it for `pushctl stats`.
//
// # Bad input
//
// A result or registration that fails its JSON Schema, or that the stores
// cannot hold (times outside 1970..2105, a token longer than 512 bytes or
// not ASCII), is dead-lettered with the reason before its offset is
// committed. Valid results are decoded on a fast path that accepts only
// what the schema accepts, falling back to schemas.DecodeResult.
package feedback
