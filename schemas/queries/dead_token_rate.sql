-- Dead-token rate by app, platform and day, the last 30 days: token_dead
-- results over sent attempts, those that reached a provider, with the
-- suspect rate beside it. Distinct tokens, not results, so a device that
-- failed twice counts once. One row per result id, its latest copy (see
-- README.md for both); the window as in delivery_rate.sql.
SELECT
    app,
    platform,
    toDate(latest_at) AS day,
    uniqExactIf(token, provider != '' AND status != 0) AS tokens_sent,
    uniqExactIf(token, outcome = 'token_dead') AS tokens_dead,
    uniqExactIf(token, outcome = 'token_suspect') AS tokens_suspect,
    if(tokens_sent = 0, 0, round(tokens_dead / tokens_sent, 4)) AS dead_rate,
    if(tokens_sent = 0, 0, round(tokens_suspect / tokens_sent, 4)) AS suspect_rate
FROM (
    SELECT
        result_id,
        argMax(app, version) AS app,
        argMax(platform, version) AS platform,
        argMax(token, version) AS token,
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
