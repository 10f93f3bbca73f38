-- One row per result event (feedback). ClickHouse 18.16 and current
-- releases: no TTL, CODEC, DateTime64, Map, LowCardinality or skipping
-- indexes. Times are DateTime('UTC') (seconds); latency and lateness keep
-- milliseconds as Float64.
--
-- Replay safety: ReplacingMergeTree(version) keyed by (campaign_id,
-- result_id) and partitioned by the month of the result's own time, so a
-- replayed row (same result id, same time) falls in the same partition
-- under the same key and merges keep one. Until a merge runs, duplicates are
-- visible, and two copies of one result id can differ (a chunk re-sent
-- after a crash: retryable, then delivered). Every query first keeps one
-- row per result id, the one with the greatest version (GROUP BY
-- result_id with argMax(column, version)), then filters and counts, as
-- schemas/queries does: uniqExact(result_id) per outcome counts such a
-- result under both outcomes, and FROM results FINAL with a WHERE on
-- 18.16 filters before it collapses, counting stale copies.
--
-- version is derived from the result, not from the insert (feedback's
-- Row.version): at in milliseconds * 1000 + a content hash mod 1000, plus
-- 2^62 for a copy whose provider answer ended the attempt (not retryable),
-- so such a copy outranks a cancelled or expired one written for the same
-- devices after a crash, and among copies alike in that the later send of
-- a result id wins, whatever order the copies were inserted in. Tables
-- written before that hold insert-time milliseconds there, or the derived
-- version without the 2^62 flag, smaller than any flagged copy's; no migration is needed (current releases refuse to
-- UPDATE a version column anyway).
CREATE TABLE IF NOT EXISTS ${database}.results (
  result_id          String,
  at                 DateTime('UTC'),
  app                String,
  campaign_id        String,
  campaign_version   UInt32,
  batch_id           String,
  device_id          UInt64,
  user_id            String,
  token              String,
  platform           String,
  provider           String,
  outcome            String,
  status             UInt16,
  reason             String,
  attempt            UInt16,
  send_at            DateTime('UTC'),
  latency_ms         Float64,
  lateness_ms        Float64,
  locale             String,
  timezone           String,
  wave               String,
  provider_timestamp DateTime('UTC'),
  version            UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (campaign_id, result_id);
