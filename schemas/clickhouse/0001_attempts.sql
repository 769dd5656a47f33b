-- The delivery log: one row per delivery attempt, from <p>.attempts.
-- Runs on ClickHouse 18.16 and on current servers: plain types only (no TTL,
-- DateTime64, Map, LowCardinality, codecs or skip indexes here).
--
-- ReplacingMergeTree collapses re-inserted copies of one attempt during
-- merges; every read also collapses them (GROUP BY delivery_id, attempt or
-- uniqExact(attempt)), so numbers are exact before merges too.
-- The sorting key is (account, endpoint, accepted time, delivery, attempt):
-- every query filters one account's endpoint(s), then a time range; the
-- last two columns make (delivery_id, attempt) the replacing key, because
-- account, endpoint and accepted_at are functions of the delivery id.
-- Monthly partitions on accepted_at keep a delivery's attempts together and
-- let retention drop whole expired months.
CREATE TABLE IF NOT EXISTS {db}.attempts
(
    account_id       String,
    endpoint_id      String,
    accepted_at      DateTime,
    delivery_id      String,
    attempt          UInt16,
    event_id         String,
    event_type       String,
    outcome          String,
    http_status      UInt16,
    latency_ms       UInt32,
    error_code       String,
    error            String,
    response_excerpt String,
    test             UInt8,
    event_created    DateTime,
    attempted_at     DateTime,
    next_retry_at    DateTime,
    inserted_at      DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(accepted_at)
ORDER BY (account_id, endpoint_id, accepted_at, delivery_id, attempt)
