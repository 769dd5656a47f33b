-- Each endpoint's latest attempt time, per month of acceptance, for the
-- endpoint list's last_delivery: maxMerge over an endpoint's few rows here
-- instead of max(attempted_at) over its whole history in attempts.
-- Filled by a materialized view on every insert into attempts; max is
-- idempotent, so re-inserted attempts change nothing. Partitioned by the
-- same month as attempts, so retention drops both alike.
CREATE TABLE IF NOT EXISTS {db}.endpoint_last_attempt
(
    account_id     String,
    endpoint_id    String,
    accepted_month Date,
    last_attempt   AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(accepted_month)
ORDER BY (account_id, endpoint_id, accepted_month)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.endpoint_last_attempt_mv TO {db}.endpoint_last_attempt
AS SELECT account_id, endpoint_id, toStartOfMonth(accepted_at) AS accepted_month, maxState(attempted_at) AS last_attempt
FROM {db}.attempts
GROUP BY account_id, endpoint_id, accepted_month
;
-- Rows written before the view existed.
INSERT INTO {db}.endpoint_last_attempt (account_id, endpoint_id, accepted_month, last_attempt)
SELECT account_id, endpoint_id, toStartOfMonth(accepted_at) AS accepted_month, maxState(attempted_at)
FROM {db}.attempts
GROUP BY account_id, endpoint_id, accepted_month
