-- Delivery rate by app, platform and day: delivered attempts over sent
-- attempts. One row per result id, its latest copy (see README.md).
SELECT
    app,
    platform,
    toDate(at) AS day,
    countIf(outcome NOT IN ('expired', 'cancelled', 'invalid_token')) AS sent,
    countIf(outcome = 'delivered') AS delivered,
    if(sent = 0, 0, round(delivered / sent, 4)) AS delivery_rate
FROM (
    SELECT
        result_id,
        argMax(app, version) AS app,
        argMax(platform, version) AS platform,
        argMax(at, version) AS at,
        argMax(outcome, version) AS outcome
    FROM ${database}.results
    GROUP BY result_id
)
GROUP BY app, platform, day
ORDER BY day, app, platform;
