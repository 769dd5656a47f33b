package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
)

// startGateway starts a gateway on random ports against kafka and stops it when the test ends.
func startGateway(t *testing.T, kafka *broker.Config) *Gateway {
	t.Helper()
	return startAPI(t, testConfig(kafka, func(c *Config) { c.Dev = true }))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadyzFollowsKafka(t *testing.T) {
	kc := testenv.Kafka(t)
	g := startGateway(t, kc)
	if code, body := get(t, "http://"+g.OpsAddr()+"/readyz"); code != 200 {
		t.Fatalf("readyz = %d %s with Kafka up", code, body)
	}
	if code, _ := get(t, "http://"+g.OpsAddr()+"/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}

	// The same gateway's check against a broker that is gone: 503 with the reason, quickly.
	down := *kc
	down.Brokers = "127.0.0.1:1"
	down.DialTimeout = 500 * time.Millisecond
	g.ops.AddCheck("kafka", func(ctx context.Context) error { return down.Ping(ctx, "x") })
	start := time.Now()
	code, body := get(t, "http://"+g.OpsAddr()+"/readyz")
	if code != 503 || !strings.Contains(body, `"kafka"`) {
		t.Fatalf("readyz = %d %s with Kafka down, want 503 naming kafka", code, body)
	}
	if d := time.Since(start); d > ops.CheckTimeout+time.Second {
		t.Fatalf("readyz took %s with Kafka down", d)
	}
}

func TestUnknownRouteAndMethodUseTheEnvelope(t *testing.T) {
	g := startGateway(t, testenv.Kafka(t))
	f := func(method, path string, wantStatus int, wantCode string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+g.Addr()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus || !strings.Contains(string(b), `"success":false`) || !strings.Contains(string(b), `"code":"`+wantCode+`"`) {
			t.Fatalf("%s %s = %d %s; want %d with code %s", method, path, resp.StatusCode, b, wantStatus, wantCode)
		}
		if err := openAPISpec(t).validate(method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b); err != nil {
			t.Fatal(err)
		}
	}
	f("GET", "/v1/nope", 404, "not_found")
	f("DELETE", "/", 404, "not_found")
}
