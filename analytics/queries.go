package analytics

import "strings"

// Every statement analytics sends to ClickHouse, in one place, so that
// TestStatementsRunOnModernClickHouse can export the exact text to the chdb
// check (schemas/clickhouse/check_modern.py) and prove it on ClickHouse 26.x
// as the other tests prove it on 18.16.
//
// "{db}" is replaced by the database name; "?" are client-side bound
// parameters (strings quoted, []string as an array, GroupSet as a tuple).
// Reads collapse re-inserted attempts: a delivery's latest attempt is
// argMax(…, (attempt, attempted_at)), its attempt count uniqExact(attempt),
// and per-attempt reads GROUP BY attempt. No read uses FINAL.
const (
	sqlVersion = `SELECT version()`

	sqlCreateDatabase = `CREATE DATABASE IF NOT EXISTS {db}`

	sqlCreateMigrations = `CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = MergeTree()
ORDER BY version`

	sqlAppliedMigrations = `SELECT DISTINCT version FROM {db}.schema_migrations`

	sqlRecordMigration = `INSERT INTO {db}.schema_migrations (version, name, applied_at)`

	// sqlRetentionTTL is applied at start-up on modern servers only.
	sqlRetentionTTL = `ALTER TABLE {db}.attempts MODIFY TTL accepted_at + toIntervalDay(?)`

	sqlPartitions = `SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'attempts' AND active`

	// sqlDropPartition takes a validated YYYYMM number in place of %d.
	sqlDropPartition = `ALTER TABLE {db}.attempts DROP PARTITION %d`

	sqlInsertAttempts = `INSERT INTO {db}.attempts (account_id, endpoint_id, accepted_at, delivery_id, attempt, event_id, event_type, outcome, http_status, latency_ms, error_code, error, response_excerpt, test, event_created, attempted_at, next_retry_at, inserted_at)`

	// sqlDeliveries is one page of an endpoint's deliveries, newest first.
	// Parameters: account, endpoint, event type twice, status twice, limit, offset.
	sqlDeliveries = `SELECT
    delivery_id,
    any(event_id),
    any(event_type),
    argMax(outcome, (attempt, attempted_at)) AS delivery_status,
    uniqExact(attempt),
    argMax(http_status, (attempt, attempted_at)),
    argMax(latency_ms, (attempt, attempted_at)),
    argMax(error, (attempt, attempted_at)),
    min(accepted_at) AS created,
    max(attempted_at)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND (? = '' OR event_type = ?)
GROUP BY delivery_id
HAVING (? = '' OR delivery_status = ?)
ORDER BY created DESC, delivery_id DESC
LIMIT ? OFFSET ?`

	// sqlDeliveriesTotal counts what sqlDeliveries pages through.
	// Parameters: account, endpoint, event type twice, status twice.
	sqlDeliveriesTotal = `SELECT count() FROM (
    SELECT delivery_id, argMax(outcome, (attempt, attempted_at)) AS delivery_status
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND (? = '' OR event_type = ?)
    GROUP BY delivery_id
    HAVING (? = '' OR delivery_status = ?)
)`

	// sqlDeliveryAttempts lists one delivery's attempts, one row per attempt number.
	// Parameters: account, endpoint, delivery.
	sqlDeliveryAttempts = `SELECT
    attempt,
    any(event_id),
    any(event_type),
    argMax(outcome, attempted_at),
    argMax(http_status, attempted_at),
    argMax(latency_ms, attempted_at),
    argMax(error_code, attempted_at),
    argMax(error, attempted_at),
    argMax(response_excerpt, attempted_at),
    min(accepted_at),
    max(attempted_at),
    argMax(next_retry_at, attempted_at),
    max(test)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND delivery_id = ?
GROUP BY attempt
ORDER BY attempt`

	// sqlStatusCounts counts an endpoint's deliveries accepted since a unix time, by status.
	// Parameters: account, endpoint, since (unix seconds).
	sqlStatusCounts = `SELECT
    countIf(delivery_status = 'success'),
    countIf(delivery_status = 'failed'),
    countIf(delivery_status = 'retrying')
FROM (
    SELECT delivery_id, argMax(outcome, (attempt, attempted_at)) AS delivery_status
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?)
    GROUP BY delivery_id
)`

	// sqlLatency gives the attempt count and response-time percentiles of
	// those deliveries' attempts, each attempt counted once.
	// Parameters: account, endpoint, since (unix seconds).
	sqlLatency = `SELECT count(), quantilesExact(0.5, 0.95, 0.99)(toFloat64(attempt_latency))
FROM (
    SELECT delivery_id, attempt, argMax(latency_ms, attempted_at) AS attempt_latency
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?)
    GROUP BY delivery_id, attempt
)`

	// sqlLastDelivery is each listed endpoint's latest attempt time.
	// Parameters: account, endpoint ids (GroupSet).
	sqlLastDelivery = `SELECT endpoint_id, max(attempted_at)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id IN ?
GROUP BY endpoint_id`

	// sqlSuccessCounts is each listed endpoint's successful and finished
	// deliveries accepted since a unix time.
	// Parameters: account, endpoint ids (GroupSet), since (unix seconds).
	sqlSuccessCounts = `SELECT endpoint_id, countIf(delivery_status = 'success'), countIf(delivery_status IN ('success', 'failed'))
FROM (
    SELECT endpoint_id, delivery_id, argMax(outcome, (attempt, attempted_at)) AS delivery_status
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id IN ? AND accepted_at >= toDateTime(?)
    GROUP BY endpoint_id, delivery_id
)
GROUP BY endpoint_id`
)

// statements names every constant above, for the export to the chdb check.
var statements = map[string]string{
	"version":            sqlVersion,
	"create_database":    sqlCreateDatabase,
	"create_migrations":  sqlCreateMigrations,
	"applied_migrations": sqlAppliedMigrations,
	"record_migration":   sqlRecordMigration,
	"retention_ttl":      sqlRetentionTTL,
	"partitions":         sqlPartitions,
	"drop_partition":     sqlDropPartition,
	"insert_attempts":    sqlInsertAttempts,
	"deliveries":         sqlDeliveries,
	"deliveries_total":   sqlDeliveriesTotal,
	"delivery_attempts":  sqlDeliveryAttempts,
	"status_counts":      sqlStatusCounts,
	"latency":            sqlLatency,
	"last_delivery":      sqlLastDelivery,
	"success_counts":     sqlSuccessCounts,
}

// inDB puts the database name into a statement.
func inDB(stmt, db string) string { return strings.ReplaceAll(stmt, "{db}", db) }
