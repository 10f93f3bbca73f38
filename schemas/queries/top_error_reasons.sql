-- The 20 most frequent non-delivered outcomes of the last 7 days, by
-- provider, HTTP status and reason.
SELECT
    provider,
    outcome,
    status,
    reason,
    count() AS results,
    uniqExact(token) AS tokens,
    uniqExact(campaign_id) AS campaigns
FROM ${database}.results FINAL
WHERE at >= now() - INTERVAL 7 DAY
  AND outcome != 'delivered'
GROUP BY provider, outcome, status, reason
ORDER BY results DESC
LIMIT 20;
