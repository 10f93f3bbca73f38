-- The 20 most frequent non-delivered outcomes of the last 7 days, by
-- provider, HTTP status and reason. One row per result id, its latest copy
-- (see README.md); the inner day of margin keeps copies a re-send wrote
-- minutes apart together.
SELECT
    provider,
    outcome,
    status,
    reason,
    count() AS results,
    uniqExact(token) AS tokens,
    uniqExact(campaign_id) AS campaigns
FROM (
    SELECT
        result_id,
        argMax(provider, version) AS provider,
        argMax(outcome, version) AS outcome,
        argMax(status, version) AS status,
        argMax(reason, version) AS reason,
        argMax(token, version) AS token,
        argMax(campaign_id, version) AS campaign_id,
        argMax(at, version) AS latest_at -- not "at": the inner WHERE reads the column
    FROM ${database}.results
    WHERE at >= now() - INTERVAL 8 DAY
    GROUP BY result_id
)
WHERE latest_at >= now() - INTERVAL 7 DAY
  AND outcome != 'delivered'
GROUP BY provider, outcome, status, reason
ORDER BY results DESC
LIMIT 20;
