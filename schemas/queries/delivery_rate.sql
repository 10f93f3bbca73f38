-- Delivery rate by app, platform and day, the last 30 days: delivered
-- attempts over sent attempts, those that reached a provider. One row per
-- result id, its latest copy (see README.md for both); the inner day or
-- more of margin (the outer cut is a whole day, in the server's time zone)
-- keeps copies a re-send wrote minutes apart together, and the
-- window keeps the scan to the partitions it needs (without one, every
-- run grouped the whole history by result id).
SELECT
    app,
    platform,
    toDate(latest_at) AS day,
    countIf(provider != '' AND status != 0) AS sent,
    countIf(outcome = 'delivered') AS delivered,
    if(sent = 0, 0, round(delivered / sent, 4)) AS delivery_rate
FROM (
    SELECT
        result_id,
        argMax(app, version) AS app,
        argMax(platform, version) AS platform,
        argMax(at, version) AS latest_at, -- not "at": the inner WHERE reads the column
        argMax(outcome, version) AS outcome,
        argMax(provider, version) AS provider,
        argMax(status, version) AS status
    FROM ${database}.results
    WHERE at >= now() - INTERVAL 32 DAY
    GROUP BY result_id
)
WHERE day >= today() - 30
GROUP BY app, platform, day
ORDER BY day, app, platform;
