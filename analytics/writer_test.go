package analytics

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// ClickHouse goes away while attempts keep coming: the writer retries,
// /readyz says so, the backlog waits in Kafka, and after ClickHouse is back
// every attempt is answered exactly once. The server is a private one.
func TestClickHouseOutageLosesNothing(t *testing.T) {
	kc := testenv.Kafka(t)
	srv := testenv.StartClickHouse(t)
	cfg := testConfig(kc, srv.Addr, "zaits")
	a, reg := startAnalytics(t, cfg)
	conn := testenv.Open(t, srv.Addr, "default")
	h, err := NewHistory(conn, cfg.ClickHouseDatabase, ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	accepted := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	batch := func(from, to int) [][]byte {
		var as []schemas.Attempt
		for i := from; i < to; i++ {
			as = append(as, attemptOf("acc_o", "we_o", fmt.Sprintf("evt_%04d", i), "document.signed", 1, schemas.OutcomeSuccess, 200, 10, accepted))
		}
		return encode(t, as...)
	}
	total := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, n, err := h.Deliveries(ctx, "acc_o", "we_o", DeliveryFilter{})
		return n, err
	}
	produce(t, kc, batch(0, 300)...)
	testenv.Eventually(t, 60*time.Second, func() error {
		if n, err := total(); err != nil || n != 300 {
			return fmt.Errorf("before the outage: %d deliveries, err %v", n, err)
		}
		return nil
	})

	srv.Stop()
	down := time.Now()
	produce(t, kc, batch(300, 700)...)
	// The outage lasts 30 s (the figure) and until the writer has
	// failed at least 8 inserts in a row; /readyz reports it all along once
	// the first insert failed.
	testenv.Eventually(t, 90*time.Second, func() error {
		n := metric(t, reg, "zaits_analytics_insert_errors_total")
		if n < 1 {
			return fmt.Errorf("no failed insert yet")
		}
		code, body := readyz(t, a)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "delivery-log") || !strings.Contains(body, "clickhouse") {
			t.Fatalf("/readyz during the outage = %d %s", code, body)
		}
		if n < 8 || time.Since(down) < 30*time.Second {
			return fmt.Errorf("outage for %s with %v failed inserts so far", time.Since(down).Round(time.Second), n)
		}
		return nil
	})
	srv.Start()

	testenv.Eventually(t, 60*time.Second, func() error {
		if n, err := total(); err != nil || n != 700 {
			return fmt.Errorf("after the outage: %d deliveries, err %v", n, err)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, body := readyz(t, a); code != http.StatusOK {
			return fmt.Errorf("/readyz after the outage = %d %s", code, body)
		}
		return nil
	})
	ctx := context.Background()
	page, n, err := h.Deliveries(ctx, "acc_o", "we_o", DeliveryFilter{PerPage: 100, Page: 4})
	if err != nil || n != 700 || len(page) != 100 {
		t.Fatalf("page 4: %d rows, total %d, err %v", len(page), n, err)
	}
	st, err := h.Stats(ctx, "acc_o", "we_o", time.Hour)
	if err != nil || st.Total != 700 || st.Succeeded != 700 || st.Attempts != 700 {
		t.Errorf("stats after the outage = %+v, %v", st, err)
	}
	raw, err := rawRows(ctx, conn, cfg.ClickHouseDatabase)
	if err != nil || raw < 700 {
		t.Errorf("raw rows %d, err %v", raw, err)
	}
	t.Logf("raw rows %d for 700 attempts; %v failed inserts", raw, metric(t, reg, "zaits_analytics_insert_errors_total"))

	// A restart during an outage: the batch that could not be inserted was
	// not committed, so the next process of the group inserts it.
	srv.Stop()
	errs := metric(t, reg, "zaits_analytics_insert_errors_total")
	produce(t, kc, batch(700, 800)...)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := metric(t, reg, "zaits_analytics_insert_errors_total"); n < errs+2 {
			return fmt.Errorf("%v failed inserts so far", n-errs)
		}
		return nil
	})
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	startAnalytics(t, cfg)
	testenv.Eventually(t, 60*time.Second, func() error {
		if n, err := total(); err != nil || n != 800 {
			return fmt.Errorf("after the restart: %d deliveries, err %v", n, err)
		}
		return nil
	})
}
