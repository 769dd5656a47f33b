package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
)

func TestDeliveryHistoryRoutes(t *testing.T) {
	kc := testenv.Kafka(t)
	// Without a delivery log: the routes still authenticate, check tenancy and
	// parameters, then answer 503 history_unavailable; list fields stay null.
	bare := startAPI(t, testConfig(kc, receiverConfig))
	id0 := create(t, bare, keyA, createBody)["id"].(string)
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/deliveries", ""), 503, "history_unavailable")
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/stats", ""), 503, "history_unavailable")
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/deliveries/del_aaaaaaaaaaaaaaaaaaaaaaaaaa", ""), 503, "history_unavailable")
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/deliveries?status=bogus", ""), 400, "validation_error")
	want(t, call(t, bare, "", "GET", "/v1/webhooks/endpoints/"+id0+"/deliveries", ""), 401, "unauthorized")

	// With the delivery log (analytics running): the test attempt shows up.
	an := startAnalytics(t, kc)
	g := startAPI(t, testConfig(kc, receiverConfig, func(c *Config) { c.History = an }))
	rc := newReceiver(t, 200)
	id := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, rc.url))["id"].(string)
	tr := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", `{"event_type": "face.verified"}`)
	did := tr.data()["delivery_id"].(string)
	var r response
	testenv.Eventually(t, 20*time.Second, func() error {
		r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries", "")
		if r.status != 200 || len(r.list()) != 1 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	row := r.list()[0].(map[string]any)
	if row["id"] != did || row["status"] != "success" || row["event_type"] != "face.verified" || row["attempts"] != 1.0 || row["response_status"] != 200.0 {
		t.Fatalf("row %v", row)
	}
	f := func(query string, n int) {
		t.Helper()
		r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries"+query, "")
		want(t, r, 200, "")
		if len(r.list()) != n || r.v["pagination"].(map[string]any)["total"] != float64(n) {
			t.Fatalf("%s: %s", query, r.body)
		}
	}
	f("?status=success", 1)
	f("?status=failed", 0)
	f("?event_type=face.verified", 1)
	f("?event_type=document.signed", 0)
	r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did, "")
	want(t, r, 200, "")
	if h := r.data()["attempt_history"].([]any); len(h) != 1 || h[0].(map[string]any)["test"] != true {
		t.Fatalf("detail %s", r.body)
	}
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/del_aaaaaaaaaaaaaaaaaaaaaaaaaa", ""), 404, "delivery_not_found")
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/nope", ""), 404, "delivery_not_found")
	// Another account cannot read it, even with the delivery id.
	want(t, call(t, g, keyB, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did, ""), 404, "endpoint_not_found")
	r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/stats?window=1h", "")
	want(t, r, 200, "")
	if r.data()["total"] != 1.0 || r.data()["success"] != 1.0 || r.data()["window"] != "1h0m0s" {
		t.Fatalf("stats %s", r.body)
	}
	if _, ok := r.data()["series"]; ok {
		t.Fatalf("stats without bucket has a series: %s", r.body)
	}
	// With a bucket: the same numbers plus one entry per minute, the test
	// delivery in the last ones with its publish→receipt latency.
	r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/stats?window=1h&bucket=1m", "")
	want(t, r, 200, "")
	series, _ := r.data()["series"].([]any)
	var total, ok float64
	var p50 any
	for _, b := range series {
		b := b.(map[string]any)
		total, ok = total+b["total"].(float64), ok+b["success"].(float64)
		if b["total"] != 0.0 {
			p50 = b["p50_ms"]
		}
	}
	if len(series) != 61 || total != 1 || ok != 1 || r.data()["total"] != 1.0 || p50 == nil {
		t.Fatalf("stats series: %d buckets, total %v, success %v, p50 %v: %s", len(series), total, ok, p50, r.body)
	}
	if r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/stats?window=24h&bucket=1h", ""); len(r.data()["series"].([]any)) != 25 {
		t.Fatalf("stats 24h in 1h buckets: %s", r.body)
	}
	for _, q := range []string{"bucket=30s", "bucket=90s", "window=1h&bucket=2h", "window=7d&bucket=1m", "bucket=abc", "bucket="} {
		r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/stats?"+q, "")
		want(t, r, 400, "validation_error")
		if fs := r.fields(); len(fs) != 1 || fs[0] != "bucket" {
			t.Fatalf("stats?%s: %s", q, r.body)
		}
	}
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/stats?bucket=1s", ""), 400, "validation_error")
	want(t, call(t, bare, keyA, "GET", "/v1/webhooks/endpoints/"+id0+"/stats?bucket=1m", ""), 503, "history_unavailable")
	// The endpoint list now carries last_delivery and success_rate.
	r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, "")
	if r.data()["last_delivery"] == nil || r.data()["success_rate"] != 1.0 || r.header.Get(HeaderSummaries) != "" {
		t.Fatalf("summary %s %s", r.header.Get(HeaderSummaries), r.body)
	}
}

// With ClickHouse unreachable the endpoint list is still served (summaries
// null) and the history routes answer 503 quickly.
func TestHistoryDown(t *testing.T) {
	kc := testenv.Kafka(t)
	down := *startAnalyticsConfig(t, kc)
	down.ClickHouseAddr, down.ClickHouseDialTimeout = "127.0.0.1:1", 200*time.Millisecond
	g := startAPI(t, testConfig(kc, func(c *Config) { c.History = &down }))
	id := create(t, g, keyA, createBody)["id"].(string)
	start := time.Now()
	r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints", "")
	want(t, r, 200, "")
	if it := r.list()[0].(map[string]any); it["last_delivery"] != nil || it["success_rate"] != nil || r.header.Get(HeaderSummaries) != "unavailable" {
		t.Fatalf("list %s %s: %q", r.header.Get(HeaderSummaries), r.body, HeaderSummaries)
	}
	if r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""); r.data()["success_rate"] != nil || r.header.Get(HeaderSummaries) != "unavailable" {
		t.Fatalf("get: %s %s", r.header.Get(HeaderSummaries), r.body)
	}
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries", ""), 503, "history_unavailable")
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/stats", ""), 503, "history_unavailable")
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("answers took %s with ClickHouse down", d)
	}
}
