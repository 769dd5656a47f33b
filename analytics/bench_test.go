package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// BenchmarkInsert measures the writer's path from attempt JSON to
// ClickHouse: decode, validate, build the columns, one INSERT of a default
// batch (50,000 rows). Target: >= 200,000 rows/s.
func BenchmarkInsert(b *testing.B) {
	conn, db := testenv.ClickHouse(b)
	ctx := context.Background()
	if err := Migrate(ctx, conn, db, 30, testLogger(b)); err != nil {
		b.Fatal(err)
	}
	const rows = 50000
	values := make([][]byte, rows)
	now := time.Now().UTC()
	for i := range values {
		a := attemptOf("acc_bench", "we_"+strconv.Itoa(i%100), "evt_"+strconv.Itoa(i), "document.signed", 1+i%5,
			schemas.OutcomeRetrying, 500, int64(i%3000), now)
		values[i], _ = json.Marshal(a)
	}
	w := &writer{conn: conn, insert: sqlInsertAttempts.in(db)}
	var c columns
	b.ResetTimer()
	start := time.Now()
	var decoded, inserting time.Duration
	for range b.N {
		t0 := time.Now()
		c.reset()
		for _, v := range values {
			var a schemas.Attempt
			if err := decodeAttempt(v, &a); err != nil {
				b.Fatal(err)
			}
			c.add(&a)
		}
		decoded += time.Since(t0)
		t1 := time.Now()
		if err := w.insertOnce(ctx, &c); err != nil {
			b.Fatal(err)
		}
		inserting += time.Since(t1)
	}
	b.ReportMetric(float64(rows*b.N)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric(float64(rows*b.N)/decoded.Seconds(), "decoded-rows/s")
	b.ReportMetric(float64(rows*b.N)/inserting.Seconds(), "inserted-rows/s")
}

// BenchmarkWriterThroughKafka measures the whole writer: 200,000 attempt
// records waiting in <p>.attempts (produced before the timer starts) are
// consumed, inserted and committed. The clock starts once the consumer
// group has joined and the first rows arrived (joining takes Kafka's
// initial rebalance delay, a constant unrelated to throughput).
func BenchmarkWriterThroughKafka(b *testing.B) {
	const rows = 200000
	now := time.Now().UTC()
	values := make([][]byte, rows)
	for i := range values {
		a := attemptOf("acc_bench", "we_"+strconv.Itoa(i%100), "evt_"+strconv.Itoa(i), "document.signed", 1,
			schemas.OutcomeSuccess, 200, int64(i%3000), now)
		values[i], _ = json.Marshal(a)
	}
	var elapsed time.Duration
	var counted uint64
	b.StopTimer()
	for range b.N {
		kc := testenv.Kafka(b)
		conn, db := testenv.ClickHouse(b)
		produce(b, kc, values...)
		cfg := testConfig(kc, testenv.ClickHouseAddr(), db)
		cfg.BatchInterval = time.Second // the default
		ctx := context.Background()
		if err := Migrate(ctx, conn, db, 30, testLogger(b)); err != nil {
			b.Fatal(err)
		}
		startAnalytics(b, cfg)
		waitRows(b, conn, db, 1)
		first, err := rawRows(ctx, conn, db)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		waitRows(b, conn, db, rows)
		elapsed += time.Since(start)
		counted += rows - first
	}
	if counted > 0 {
		b.ReportMetric(float64(counted)/elapsed.Seconds(), "rows/s")
	}
}

// The query benchmarks read a delivery log of benchRows attempt rows
// (ZAITS_BENCH_ROWS, default 10,000,000): one account, benchEndpoints
// endpoints, two attempts per delivery (a retry, then success or, for one
// delivery in ten, failure), accepted over the last 20 days. It is loaded
// once server-side (INSERT … SELECT FROM numbers()) into the database
// bench_zaits_analytics_v3, which is kept for the next run.
const benchEndpoints = 100

var (
	benchOnce sync.Once
	benchErr  error
)

func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("ZAITS_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 10_000_000
}

func benchLog(b *testing.B) (driver.Conn, string) {
	b.Helper()
	conn := testenv.Open(b, testenv.ClickHouseAddr(), "default")
	db := "bench_zaits_analytics_v3" // bump when the generated data changes
	n := benchRows()
	benchOnce.Do(func() {
		ctx := context.Background()
		var have uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'attempts'", db).Scan(&have); err == nil && have == 1 {
			if rows, err := rawRows(ctx, conn, db); err == nil && rows == uint64(n) {
				return
			}
		}
		if benchErr = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); benchErr != nil {
			return
		}
		if benchErr = Migrate(ctx, conn, db, 30, testLogger(b)); benchErr != nil {
			return
		}
		start := time.Now()
		deliveries := n / 2
		benchErr = conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s.attempts (account_id, endpoint_id, accepted_at, delivery_id, attempt, event_id, event_type, outcome, http_status, latency_ms, error_code, error, response_excerpt, test, event_created, attempted_at, next_retry_at, inserted_at)
SELECT
    'acc_bench',
    concat('we_', toString(d %% %[2]d)),
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[3]d)),
    concat('del_', toString(d)),
    toUInt16(a),
    concat('evt_', toString(d)),
    ['document.signed', 'face.verified', 'document.expired'][d %% 3 + 1],
    a = 1 ? 'retrying' : (intDiv(d, %[2]d) %% 10 = 0 ? 'failed' : 'success'),
    toUInt16(a = 1 OR intDiv(d, %[2]d) %% 10 = 0 ? 500 : 200),
    toUInt32(rand() %% 3000),
    a = 1 OR intDiv(d, %[2]d) %% 10 = 0 ? 'http_status' : '',
    a = 1 OR intDiv(d, %[2]d) %% 10 = 0 ? 'Internal server error' : '',
    '{"ok":false}',
    toUInt8(0),
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[3]d)),
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[3]d) + (a - 1) * 60),
    toDateTime(0),
    now()
FROM (SELECT intDiv(number, 2) AS d, number %% 2 + 1 AS a FROM numbers(%[4]d))`, db, benchEndpoints, deliveries, n))
		b.Logf("loaded %d attempt rows in %s", n, time.Since(start))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return conn, db
}

// benchQuery runs q b.N times against random endpoints and reports the
// p50 and p99 latency in milliseconds. Target: p99 < 100 ms.
func benchQuery(b *testing.B, q func(ctx context.Context, h *History, endpoint string, delivery int) error) {
	conn, db := benchLog(b)
	h, err := NewHistory(conn, db, ops.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		d := rand.IntN(benchRows() / 2)
		start := time.Now()
		if err := q(ctx, h, "we_"+strconv.Itoa(d%benchEndpoints), d); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkDeliveriesPage(b *testing.B) {
	benchQuery(b, func(ctx context.Context, h *History, ep string, _ int) error {
		rows, total, err := h.Deliveries(ctx, "acc_bench", ep, DeliveryFilter{})
		if err == nil && (len(rows) != DefaultPerPage || total == 0) {
			err = fmt.Errorf("%d rows of %d", len(rows), total)
		}
		return err
	})
}

func BenchmarkDeliveriesPageFiltered(b *testing.B) {
	benchQuery(b, func(ctx context.Context, h *History, ep string, _ int) error {
		rows, total, err := h.Deliveries(ctx, "acc_bench", ep, DeliveryFilter{Status: "failed", EventType: "document.signed", Page: 2})
		if err == nil && (len(rows) != min(DefaultPerPage, total-DefaultPerPage) || total == 0) {
			err = fmt.Errorf("%d rows of %d", len(rows), total)
		}
		return err
	})
}

func BenchmarkDeliveryDetail(b *testing.B) {
	benchQuery(b, func(ctx context.Context, h *History, ep string, d int) error {
		det, found, err := h.Delivery(ctx, "acc_bench", ep, "del_"+strconv.Itoa(d))
		if err == nil && (!found || len(det.AttemptList) != 2) {
			err = fmt.Errorf("delivery %d: found %v, %d attempts", d, found, len(det.AttemptList))
		}
		return err
	})
}

func BenchmarkStats(b *testing.B) {
	benchQuery(b, func(ctx context.Context, h *History, ep string, _ int) error {
		st, err := h.Stats(ctx, "acc_bench", ep, 7*24*time.Hour)
		if err == nil && st.Total == 0 {
			err = fmt.Errorf("no deliveries in stats")
		}
		return err
	})
}

func BenchmarkSummaries(b *testing.B) {
	eps := make([]string, DefaultPerPage)
	for i := range eps {
		eps[i] = "we_" + strconv.Itoa(i)
	}
	benchQuery(b, func(ctx context.Context, h *History, _ string, _ int) error {
		sum, err := h.Summaries(ctx, "acc_bench", eps, 7*24*time.Hour)
		if err == nil && len(sum) != len(eps) {
			err = fmt.Errorf("%d summaries", len(sum))
		}
		return err
	})
}
