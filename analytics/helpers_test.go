package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// testConfig is the default configuration pointed at kc, addr and db, with
// a fresh consumer group and short batches.
func testConfig(kc *broker.Config, addr, db string) Config {
	return Config{Kafka: kc, OpsListen: "127.0.0.1:0", ClickHouseAddr: addr, ClickHouseDatabase: db,
		Group: "test-analytics-" + broker.RandomSuffix(8), BatchInterval: 100 * time.Millisecond}
}

// startAnalytics runs the component until the test ends.
func startAnalytics(t testing.TB, cfg Config) (*Analytics, *prometheus.Registry) {
	t.Helper()
	reg := ops.NewRegistry()
	a, err := New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop analytics: %v", err)
		}
	})
	return a, reg
}

// produce writes values to <p>.attempts with acks=all.
func produce(t testing.TB, kc *broker.Config, values ...[]byte) {
	t.Helper()
	w := kc.NewWriter(kc.Topic(schemas.TopicAttempts), 5*time.Millisecond)
	w.BatchSize = 10000
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		var a schemas.Attempt
		_ = json.Unmarshal(v, &a) // malformed values get an empty key
		msgs[i] = kafka.Message{Key: []byte(a.EndpointID), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce attempts: %v", err)
	}
}

func encode(t testing.TB, as ...schemas.Attempt) [][]byte {
	t.Helper()
	out := make([][]byte, len(as))
	for i := range as {
		b, err := json.Marshal(as[i])
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// rawRows counts the attempts table's rows, copies included.
func rawRows(ctx context.Context, conn driver.Conn, db string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".attempts").Scan(&n)
	return n, err
}

// waitRows waits until the attempts table holds at least n rows.
func waitRows(t testing.TB, conn driver.Conn, db string, n uint64) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := rawRows(ctx, conn, db)
		if err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("%d of %d rows in %s.attempts", got, n, db)
		}
		return nil
	})
}

// metric returns the value of a counter or gauge without labels.
func metric(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.Metric) == 0 {
			continue
		}
		m := mf.Metric[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// readyz returns the ops server's /readyz status code and body.
func readyz(t testing.TB, a *Analytics) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.OpsAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
