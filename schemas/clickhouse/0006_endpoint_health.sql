-- Each endpoint's success and failure times per hour, for the router's
-- check that disables an endpoint whose every attempt failed for the
-- configured period (default 5 days): its last success, and per hour after
-- it the first failure. Attempts that sent nothing (test sends, endpoint
-- deleted or inactive at attempt time) do not count. Filled by a
-- materialized view on every insert into attempts; max and min are
-- idempotent, so re-inserted attempts change nothing. Partitioned by month,
-- so retention drops it like the others.
CREATE TABLE IF NOT EXISTS {db}.endpoint_health
(
    account_id   String,
    endpoint_id  String,
    hour         DateTime,
    last_ok      AggregateFunction(maxIf, DateTime, UInt8),
    first_fail   AggregateFunction(minIf, DateTime, UInt8),
    last_attempt AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (account_id, endpoint_id, hour)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.endpoint_health_mv TO {db}.endpoint_health
AS SELECT account_id, endpoint_id, toStartOfHour(attempted_at) AS hour,
    maxIfState(attempted_at, outcome = 'success') AS last_ok,
    minIfState(attempted_at, outcome != 'success') AS first_fail,
    maxState(attempted_at) AS last_attempt
FROM {db}.attempts
WHERE test = 0 AND error_code NOT IN ('endpoint_deleted', 'endpoint_inactive')
GROUP BY account_id, endpoint_id, hour
;
-- Rows written before the view existed.
INSERT INTO {db}.endpoint_health (account_id, endpoint_id, hour, last_ok, first_fail, last_attempt)
SELECT account_id, endpoint_id, toStartOfHour(attempted_at) AS hour,
    maxIfState(attempted_at, outcome = 'success'),
    minIfState(attempted_at, outcome != 'success'),
    maxState(attempted_at)
FROM {db}.attempts
WHERE test = 0 AND error_code NOT IN ('endpoint_deleted', 'endpoint_inactive')
GROUP BY account_id, endpoint_id, hour
