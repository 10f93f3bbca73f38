-- Lateness against send-at (send start minus send-at, milliseconds) of the
-- sent attempts, those that reached a provider, per campaign, of the last
-- 30 days: quantiles and a bucketed histogram. One row per result id, its
-- latest copy (see README.md for both); the window as in delivery_rate.sql.
SELECT
    campaign_id,
    count() AS sent,
    quantilesExact(0.5, 0.9, 0.99, 0.999)(lateness_ms) AS p50_p90_p99_p999_ms,
    max(lateness_ms) AS max_ms,
    countIf(lateness_ms < 0) AS early,
    countIf(lateness_ms >= 0 AND lateness_ms < 100) AS under_100ms,
    countIf(lateness_ms >= 100 AND lateness_ms < 1000) AS under_1s,
    countIf(lateness_ms >= 1000 AND lateness_ms < 10000) AS under_10s,
    countIf(lateness_ms >= 10000 AND lateness_ms < 60000) AS under_1min,
    countIf(lateness_ms >= 60000) AS over_1min
FROM (
    SELECT
        result_id,
        argMax(campaign_id, version) AS campaign_id,
        argMax(lateness_ms, version) AS lateness_ms,
        argMax(provider, version) AS provider,
        argMax(status, version) AS status,
        argMax(at, version) AS latest_at
    FROM ${database}.results
    WHERE at >= now() - INTERVAL 31 DAY
    GROUP BY result_id
)
WHERE provider != '' AND status != 0
  AND latest_at >= now() - INTERVAL 30 DAY
GROUP BY campaign_id
ORDER BY campaign_id;
