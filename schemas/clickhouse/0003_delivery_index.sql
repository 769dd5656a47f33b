-- Where a delivery sits in the attempts table's sort order: the delivery
-- detail looks up accepted_at here by (account, endpoint, delivery id), so
-- it reads a few granules of attempts instead of the endpoint's history.
-- Filled by a materialized view on every insert into attempts; copies
-- collapse (ReplacingMergeTree) and are harmless to the IN lookup.
-- Partitioned like attempts, so retention drops both alike.
CREATE TABLE IF NOT EXISTS {db}.delivery_index
(
    account_id  String,
    endpoint_id String,
    delivery_id String,
    accepted_at DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(accepted_at)
ORDER BY (account_id, endpoint_id, delivery_id)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.delivery_index_mv TO {db}.delivery_index
AS SELECT account_id, endpoint_id, delivery_id, accepted_at FROM {db}.attempts
;
-- Rows written before the view existed.
INSERT INTO {db}.delivery_index (account_id, endpoint_id, delivery_id, accepted_at)
SELECT account_id, endpoint_id, delivery_id, min(accepted_at) FROM {db}.attempts GROUP BY account_id, endpoint_id, delivery_id
