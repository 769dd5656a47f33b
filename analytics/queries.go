package analytics

import "strings"

// Every statement analytics sends to ClickHouse, in one place and referred
// to by its variable (never by a string key), so that
// TestStatementsRunOnModernClickHouse can export the exact text to the chdb
// check (schemas/clickhouse/check_modern.py) and prove it on ClickHouse 26.x
// as the other tests prove it on 18.16.
//
// "{db}" is replaced by the database name; "?" are client-side bound
// parameters (strings quoted, []string as an array, GroupSet as a tuple).
// Reads collapse re-inserted attempts: deliveries are counted with
// uniqExact(delivery_id), a delivery's attempts with uniqExact(attempt), its
// latest attempt is argMax(…, (attempt, attempted_at)), and per-attempt
// reads GROUP BY attempt. No read uses FINAL.
var (
	sqlVersion = statement{"version", `SELECT version()`}

	sqlCreateDatabase = statement{"create_database", `CREATE DATABASE IF NOT EXISTS {db}`}

	sqlCreateMigrations = statement{"create_migrations", `CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = MergeTree()
ORDER BY version`}

	sqlAppliedMigrations = statement{"applied_migrations", `SELECT DISTINCT version FROM {db}.schema_migrations`}

	sqlRecordMigration = statement{"record_migration", `INSERT INTO {db}.schema_migrations (version, name, applied_at)`}

	// sqlRetentionTTL* are applied at start-up on modern servers only.
	sqlRetentionTTL      = statement{"retention_ttl", `ALTER TABLE {db}.attempts MODIFY TTL accepted_at + toIntervalDay(?)`}
	sqlRetentionTTLIndex = statement{"retention_ttl_index", `ALTER TABLE {db}.delivery_index MODIFY TTL accepted_at + toIntervalDay(?)`}

	// sqlPartitions lists a table's partitions. Parameters: database, table.
	sqlPartitions = statement{"partitions", `SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active`}

	// sqlDropPartition takes a table of partitionedTables for %s and a
	// validated YYYYMM number for %d.
	sqlDropPartition = statement{"drop_partition", `ALTER TABLE {db}.%s DROP PARTITION %d`}

	sqlInsertAttempts = statement{"insert_attempts", `INSERT INTO {db}.attempts (account_id, endpoint_id, accepted_at, delivery_id, attempt, event_id, event_type, outcome, http_status, latency_ms, error_code, error, response_excerpt, test, event_created, attempted_at, next_retry_at, inserted_at, trigger, event_partition, event_offset)`}

	// A delivery's status: success if an attempt succeeded, else failed if
	// an attempt failed, else retrying. Live, the dispatcher makes no attempt
	// after a success or a failure, so this is the latest attempt's outcome;
	// a resend, recover, replay or redrive adds attempts after it, and the
	// delivery stays success once delivered, failed until an attempt of the
	// new run succeeds. Unlike argMax it needs no GROUP BY to filter or count
	// deliveries by status, and copies cannot change it.

	// sqlDeliveryIDs is one page of an endpoint's delivery ids, newest first
	// (accepted_at is the same in every attempt of a delivery), for the
	// status filters "", success and failed: a delivery has an attempt with
	// outcome success exactly when its status is success, and one with
	// outcome failed when its status is failed or, after a recovery run
	// (trigger not ''), success: failed leaves out the deliveries such a run
	// touched that have a success (few: only recovery runs add attempts after
	// a failure or a success, so the live history needs no GROUP BY).
	// History.Deliveries first looks at the last day only (since), which
	// holds the page whenever it comes back full, and else at everything
	// (since 0).
	// Parameters: account, endpoint, since (unix seconds), event type twice,
	// status three times, account, endpoint, account, endpoint, offset, limit.
	sqlDeliveryIDs = statement{"delivery_ids", `SELECT delivery_id, accepted_at
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?) AND (? = '' OR event_type = ?) AND (? = '' OR outcome = ?)
    AND (? != 'failed' OR delivery_id NOT IN (` + recoveredSuccesses + `))
ORDER BY accepted_at DESC, delivery_id DESC
LIMIT 1 BY delivery_id
LIMIT ?, ?`}

	// sqlDeliveriesTotal counts what sqlDeliveryIDs pages through.
	// Parameters: account, endpoint, event type twice, status three times,
	// account, endpoint, account, endpoint.
	sqlDeliveriesTotal = statement{"deliveries_total", `SELECT uniqExact(delivery_id)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND (? = '' OR event_type = ?) AND (? = '' OR outcome = ?)
    AND (? != 'failed' OR delivery_id NOT IN (` + recoveredSuccesses + `))`}

	// sqlRetryingIDs is one page of the deliveries none of whose attempts
	// succeeded or failed. Parameters: account, endpoint, event type twice, offset, limit.
	sqlRetryingIDs = statement{"retrying_ids", `SELECT delivery_id, created
FROM (
    SELECT delivery_id, min(accepted_at) AS created
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND (? = '' OR event_type = ?)
    GROUP BY delivery_id
    HAVING max(outcome != 'retrying') = 0
)
ORDER BY created DESC, delivery_id DESC
LIMIT ?, ?`}

	// sqlRetryingTotal counts what sqlRetryingIDs pages through.
	// Parameters: account, endpoint, event type twice.
	sqlRetryingTotal = statement{"retrying_total", `SELECT count()
FROM (
    SELECT delivery_id
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND (? = '' OR event_type = ?)
    GROUP BY delivery_id
    HAVING max(outcome != 'retrying') = 0
)`}

	// sqlDeliveryRows summarises the listed deliveries, newest first: the
	// latest attempt is argMax(…, (attempt, attempted_at)). The accepted_at
	// range of the page narrows the read to a few granules.
	// Parameters: account, endpoint, first and last accepted_at of the page
	// (unix seconds), delivery ids (GroupSet).
	sqlDeliveryRows = statement{"delivery_rows", `SELECT
    delivery_id,
    any(event_id),
    any(event_type),
    multiIf(max(outcome = 'success') = 1, 'success', max(outcome = 'failed') = 1, 'failed', 'retrying'),
    uniqExact(attempt),
    argMax(http_status, (attempt, attempted_at)),
    argMax(latency_ms, (attempt, attempted_at)),
    argMax(error, (attempt, attempted_at)),
    min(accepted_at) AS created,
    max(attempted_at)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?) AND accepted_at <= toDateTime(?) AND delivery_id IN ?
GROUP BY delivery_id
ORDER BY created DESC, delivery_id DESC`}

	// sqlDeliveryAttempts lists one delivery's attempts, one row per attempt
	// number (the latest copy of each); delivery_index gives accepted_at, so
	// the read stays within a few granules.
	// Parameters: account, endpoint, delivery, account, endpoint, delivery.
	sqlDeliveryAttempts = statement{"delivery_attempts", `SELECT
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
    max(test),
    argMax(trigger, attempted_at)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND delivery_id = ? AND accepted_at IN (
    SELECT accepted_at FROM {db}.delivery_index WHERE account_id = ? AND endpoint_id = ? AND delivery_id = ?
)
GROUP BY attempt
ORDER BY attempt`}

	// sqlStatusCounts counts an endpoint's deliveries accepted since a unix
	// time: all, successful, finished (successful or failed).
	// Parameters: account, endpoint, since (unix seconds).
	sqlStatusCounts = statement{"status_counts", `SELECT
    uniqExact(delivery_id),
    uniqExactIf(delivery_id, outcome = 'success'),
    uniqExactIf(delivery_id, outcome IN ('success', 'failed'))
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?)`}

	// sqlLatency gives the attempt count and response-time percentiles of
	// those deliveries' attempts, each attempt counted once.
	// Parameters: account, endpoint, since (unix seconds).
	sqlLatency = statement{"latency", `SELECT count(), quantilesExact(0.5, 0.95, 0.99)(toFloat64(attempt_latency))
FROM (
    SELECT delivery_id, attempt, argMax(latency_ms, attempted_at) AS attempt_latency
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?)
    GROUP BY delivery_id, attempt
)`}

	// sqlSeriesCounts counts an endpoint's deliveries accepted since a unix
	// time per bucket of accepted_at (bucket = unix seconds / bucket
	// seconds): all, successful, failed. toUInt32 of a DateTime is its unix
	// time on every server, so buckets do not depend on the time zone.
	// Parameters: bucket seconds, account, endpoint, since (unix seconds).
	sqlSeriesCounts = statement{"series_counts", `SELECT
    toUInt32(intDiv(toUInt32(accepted_at), ?)) AS bucket,
    uniqExact(delivery_id),
    uniqExactIf(delivery_id, outcome = 'success'),
    uniqExactIf(delivery_id, outcome = 'failed')
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?)
GROUP BY bucket
ORDER BY bucket`}

	// sqlSeriesLatency gives, per bucket of accepted_at, the p50 and p99 of
	// publish→receipt of the successful deliveries: the successful attempt's
	// start minus the acceptance (whole seconds: both columns are DateTime)
	// plus its duration (ms). Copies of the attempt collapse in the inner
	// GROUP BY: the earliest successful start counts (the first receipt).
	// Parameters: bucket seconds, account, endpoint, since (unix seconds).
	sqlSeriesLatency = statement{"series_latency", `SELECT bucket, quantilesExact(0.5, 0.99)(toFloat64(receipt_ms))
FROM (
    SELECT
        toUInt32(intDiv(toUInt32(min(accepted_at)), ?)) AS bucket,
        (toInt64(toUInt32(min(attempted_at))) - toInt64(toUInt32(min(accepted_at)))) * 1000 + toInt64(argMin(latency_ms, attempted_at)) AS receipt_ms
    FROM {db}.attempts
    WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?) AND outcome = 'success'
    GROUP BY delivery_id
)
GROUP BY bucket
ORDER BY bucket`}

	// sqlDeliveryOrigin is what a resend needs of one delivery: its event,
	// when it was accepted, where the event is on <p>.events (-1 when the
	// attempts predate positions), its number of attempts so far, and
	// whether it was a test send. Parameters: account, endpoint, delivery,
	// account, endpoint, delivery.
	sqlDeliveryOrigin = statement{"delivery_origin", `SELECT
    any(event_id),
    any(event_type),
    min(accepted_at),
    max(event_partition),
    max(event_offset),
    max(attempt),
    max(test)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND delivery_id = ? AND accepted_at IN (
    SELECT accepted_at FROM {db}.delivery_index WHERE account_id = ? AND endpoint_id = ? AND delivery_id = ?
)
GROUP BY delivery_id`}

	// sqlFailedPage is the next page of an endpoint's failed deliveries
	// (status failed: an attempt failed and none succeeded) accepted in
	// [since, until), oldest first — by acceptance second, then by the
	// event's offset (one account's events share a partition, so that is
	// acceptance order), then delivery id — after the cursor: what a recover
	// job re-sends. Test sends are left out. Parameters: account, endpoint,
	// since, until (unix seconds), cursor accepted_at (unix seconds), cursor
	// event offset, cursor delivery id, limit.
	sqlFailedPage = statement{"failed_page", `SELECT delivery_id, any(event_id), any(event_type), min(accepted_at) AS created, max(event_partition), max(event_offset), max(attempt)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?) AND accepted_at < toDateTime(?) AND test = 0
GROUP BY delivery_id
HAVING max(outcome = 'failed') = 1 AND max(outcome = 'success') = 0 AND (created, max(event_offset), delivery_id) > (toDateTime(?), ?, ?)
ORDER BY created, max(event_offset), delivery_id
LIMIT ?`}

	// sqlMaxAttempts gives the attempts recorded so far of the listed
	// deliveries, accepted in a range: a replay numbers its attempts after
	// them. Parameters: account, endpoint, first and last accepted_at (unix
	// seconds), delivery ids (GroupSet).
	sqlMaxAttempts = statement{"max_attempts", `SELECT delivery_id, max(attempt)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id = ? AND accepted_at >= toDateTime(?) AND accepted_at <= toDateTime(?) AND delivery_id IN ?
GROUP BY delivery_id`}

	// sqlFailingEndpoints lists the endpoints attempted since a time whose
	// last success (from the endpoint_health rollup) is before a threshold,
	// with per hour of their history the first failure: the router's check
	// finds in it when the endpoint began to fail everything.
	// Parameters: history start, attempted since, last success before (unix seconds).
	sqlFailingEndpoints = statement{"failing_endpoints", `SELECT account_id, endpoint_id, max(ok) AS last_ok, groupArray(hour), groupArray(ff), max(la) AS latest
FROM (
    SELECT account_id, endpoint_id, hour, maxIfMerge(last_ok) AS ok, minIfMerge(first_fail) AS ff, maxMerge(last_attempt) AS la
    FROM {db}.endpoint_health
    WHERE hour >= toDateTime(?)
    GROUP BY account_id, endpoint_id, hour
)
GROUP BY account_id, endpoint_id
HAVING latest >= toDateTime(?) AND last_ok < toDateTime(?)`}

	// sqlLastDelivery is each listed endpoint's latest attempt time, from
	// the endpoint_last_attempt rollup (a few rows per endpoint).
	// Parameters: account, endpoint ids (GroupSet).
	sqlLastDelivery = statement{"last_delivery", `SELECT endpoint_id, maxMerge(last_attempt)
FROM {db}.endpoint_last_attempt
WHERE account_id = ? AND endpoint_id IN ?
GROUP BY endpoint_id`}

	// sqlSuccessCounts is each listed endpoint's successful and finished
	// deliveries accepted since a unix time.
	// Parameters: account, endpoint ids (GroupSet), since (unix seconds).
	sqlSuccessCounts = statement{"success_counts", `SELECT endpoint_id, uniqExactIf(delivery_id, outcome = 'success'), uniqExact(delivery_id)
FROM {db}.attempts
WHERE account_id = ? AND endpoint_id IN ? AND accepted_at >= toDateTime(?) AND outcome IN ('success', 'failed')
GROUP BY endpoint_id`}
)

// recoveredSuccesses is the subquery of the deliveries a recovery run
// touched (resend, recover, replay, redrive) that have a successful
// attempt. Parameters: account, endpoint, account, endpoint.
const recoveredSuccesses = `SELECT delivery_id FROM {db}.attempts WHERE account_id = ? AND endpoint_id = ? AND outcome = 'success' AND delivery_id IN (
        SELECT delivery_id FROM {db}.attempts WHERE account_id = ? AND endpoint_id = ? AND trigger != '')`

// statements lists every statement above, for the export to the chdb check.
var statements = []statement{
	sqlVersion,
	sqlCreateDatabase,
	sqlCreateMigrations,
	sqlAppliedMigrations,
	sqlRecordMigration,
	sqlRetentionTTL,
	sqlRetentionTTLIndex,
	sqlPartitions,
	sqlDropPartition,
	sqlInsertAttempts,
	sqlDeliveryIDs,
	sqlDeliveriesTotal,
	sqlRetryingIDs,
	sqlRetryingTotal,
	sqlDeliveryRows,
	sqlDeliveryAttempts,
	sqlStatusCounts,
	sqlLatency,
	sqlSeriesCounts,
	sqlSeriesLatency,
	sqlLastDelivery,
	sqlSuccessCounts,
	sqlDeliveryOrigin,
	sqlFailedPage,
	sqlMaxAttempts,
	sqlFailingEndpoints,
}

// partitionedTables are the monthly-partitioned tables retention prunes.
var partitionedTables = []string{"attempts", "delivery_index", "endpoint_last_attempt", "endpoint_health"}

// statement is one SQL statement and its name: the key of its export to the
// chdb check (schemas/clickhouse/check_modern.py refers to it by name).
type statement struct {
	name string
	text string
}

// in is the statement's text with the database name put in.
func (s statement) in(db string) string { return inDB(s.text, db) }

// inDB puts the database name into a statement (also the migrations').
func inDB(stmt, db string) string { return strings.ReplaceAll(stmt, "{db}", db) }
