-- Lateness against send-at (send start minus send-at, milliseconds) of the
-- sent attempts, per campaign: quantiles and a bucketed histogram.
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
FROM ${database}.results FINAL
WHERE outcome NOT IN ('expired', 'cancelled', 'invalid_token')
GROUP BY campaign_id
ORDER BY campaign_id;
