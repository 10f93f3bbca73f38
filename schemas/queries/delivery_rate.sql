-- Delivery rate by app, platform and day: delivered attempts over sent
-- attempts (one row per result id: FINAL).
SELECT
    app,
    platform,
    toDate(at) AS day,
    countIf(outcome NOT IN ('expired', 'cancelled', 'invalid_token')) AS sent,
    countIf(outcome = 'delivered') AS delivered,
    if(sent = 0, 0, round(delivered / sent, 4)) AS delivery_rate
FROM ${database}.results FINAL
GROUP BY app, platform, day
ORDER BY day, app, platform;
