-- Delivery rate by app, platform and day: delivered attempts over sent
-- attempts, those that reached a provider. One row per result id, its
-- latest copy (see README.md for both).
SELECT
    app,
    platform,
    toDate(at) AS day,
    countIf(provider != '' AND status != 0) AS sent,
    countIf(outcome = 'delivered') AS delivered,
    if(sent = 0, 0, round(delivered / sent, 4)) AS delivery_rate
FROM (
    SELECT
        result_id,
        argMax(app, version) AS app,
        argMax(platform, version) AS platform,
        argMax(at, version) AS at,
        argMax(outcome, version) AS outcome,
        argMax(provider, version) AS provider,
        argMax(status, version) AS status
    FROM ${database}.results
    GROUP BY result_id
)
GROUP BY app, platform, day
ORDER BY day, app, platform;
