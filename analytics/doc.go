// Package analytics keeps the delivery log: it writes every attempt from
// <p>.attempts into ClickHouse and answers history and success-rate queries.
//
// # Writing
//
// A consumer group (analytics.group, default "<prefix>.analytics") reads
// schemas.Attempt records and inserts them in batches of at most
// analytics.batch-rows records (default 50,000), or whatever arrived within
// analytics.batch-interval (default 1 s) of a batch's first record: one
// INSERT per batch, offsets committed only after it succeeded. While
// ClickHouse fails, the same batch is retried with backoff (100 ms doubling
// to 5 s), nothing more is read, /readyz reports "delivery-log" (and the
// "clickhouse" ping) failing, and the backlog stays in Kafka; writing resumes
// by itself. A record that is not a valid attempt is counted
// (zaits_analytics_bad_messages_total), logged and skipped.
//
// # Schema and duplicates
//
// The schema lives in schemas/clickhouse as numbered migrations, applied at
// start-up (and by `zaits migrate`) and recorded in <db>.schema_migrations.
// It runs on ClickHouse 18.16; servers from 20.1 on also get LowCardinality
// columns and a TTL of analytics.retention (default 30 days). Every server
// drops monthly partitions whose whole month is older than the retention
// (analytics.retention-check, hourly).
//
// A crash may insert an attempt twice. The table is a ReplacingMergeTree
// keyed by (account, endpoint, accepted_at, delivery_id, attempt), so copies
// collapse on merges, and no read counts a copy before that: deliveries are
// counted with uniqExact(delivery_id), a delivery's attempts with
// uniqExact(attempt), its latest attempt is argMax(…, (attempt,
// attempted_at)), per-attempt rows are GROUP BY attempt. accepted_at is the
// same in every attempt of a delivery (the dispatcher copies it from the
// task; when a record lacks it the event's created time, then the attempt's
// start, stands in).
//
// # Reading: semantics the gateway exposes
//
// A delivery is one event sent to one endpoint (one delivery id), with all
// its attempts. In the list (History.Deliveries) and the detail
// (History.Delivery):
//
//   - status is "success" when an attempt succeeded, else "failed" when an
//     attempt failed for good (the schedule is exhausted or the endpoint is
//     gone), else "retrying" (an extension of the seed: the delivery is
//     still in its retry schedule). No attempt follows a success or a
//     failure, so this is the latest attempt's outcome. The status filter
//     accepts the three.
//   - attempts is the number of distinct attempts so far.
//   - response_status, response_time (ms) and error_message are the latest
//     attempt's; response_status is null when there was no HTTP response,
//     error_message null when the attempt succeeded.
//   - created_at is when the event was accepted; last_attempt when the
//     latest attempt started. Both RFC 3339, UTC, whole seconds.
//   - rows are ordered newest first by created_at, then by id descending;
//     pagination.total counts every delivery that matches the filters.
//   - test deliveries (POST …/test) are listed like any other.
//
// The endpoint list's success_rate (History.Summaries) is the number of
// deliveries whose status is success divided by the number whose status is
// success or failed, over deliveries accepted within
// analytics.success-rate-window (default 7 days); deliveries still retrying
// are not counted, and it is null when no delivery finished in the window.
// last_delivery is the start of the endpoint's latest attempt (within
// retention), null when there is none; it is read from the
// endpoint_last_attempt rollup, whose monthly partitions are dropped like
// the attempts' (on servers with TTL it may outlive the expired attempts
// rows by up to a month).
//
// Stats (GET …/stats?window=…) counts the deliveries accepted within the
// window by status, with the same success rate, and gives p50/p95/p99 of
// the durations of their attempts (every distinct attempt once; exact
// quantiles), null when there were none.
//
// Every query filters by account_id and endpoint_id, so an account never
// reads another account's deliveries, even with a guessed endpoint or
// delivery id.
package analytics
