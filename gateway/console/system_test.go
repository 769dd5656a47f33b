package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/gateway/router"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
)

// system is the whole delivery system in this process, as `zaits all -dev`
// runs it: analytics, a dispatcher, a router and a gateway on a fresh topic prefix and
// ClickHouse database, with an account API key for the console.
type system struct {
	url   string // the gateway's http://host:port
	key   string // an account API key of account
	kafka *broker.Config
	db    string
}

const account = "acct_console"

func startSystem(t *testing.T) *system {
	t.Helper()
	kc := testenv.Kafka(t)
	_, db := testenv.ClickHouse(t)
	key, entry, err := gateway.MintKey(account, false)
	if err != nil {
		t.Fatal(err)
	}
	suffix := broker.RandomSuffix(8)
	epCfg := endpoint.Config{Dev: true}
	// Failures become final within seconds: five attempts a second apart.
	dlCfg := dispatcher.ClientConfig{Dev: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	anCfg := analytics.Config{Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(), ClickHouseDatabase: db, OpsListen: "127.0.0.1:0",
		Group: "console-analytics-" + suffix, BatchInterval: 100 * time.Millisecond}
	diCfg := dispatcher.Config{Kafka: kc, Endpoints: &epCfg, Delivery: &dlCfg, Dev: true, OpsListen: "127.0.0.1:0",
		Group: "console-dispatcher-" + suffix, RetrySchedule: dispatcher.Schedule{time.Second, time.Second, time.Second, time.Second}}
	roCfg := router.Config{Kafka: kc, Endpoints: &epCfg, History: &anCfg, Dev: true, OpsListen: "127.0.0.1:0", Group: "console-router-" + suffix}
	gwCfg := gateway.Config{Kafka: kc, Endpoints: &epCfg, Delivery: &dlCfg, History: &anCfg, Dev: true,
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", APIKeys: entry}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := analytics.New(anCfg, log.With("component", "analytics"), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	d, err := dispatcher.New(diCfg, log.With("component", "dispatcher"), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(roCfg, log.With("component", "router"), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gwCfg, log.With("component", "gateway"), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type component interface {
		Start(context.Context) error
		Stop(context.Context) error
	}
	for _, c := range []component{a, d, r, g} {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	return &system{url: "http://" + g.Addr(), key: key, kafka: kc, db: db}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call makes one API request with the system's key and decodes the envelope.
func (s *system) call(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, v
}

// receiver is a local webhook receiver: 200 "OK", or 500 for events whose
// data has "fail": true.
type receiver struct {
	url string
	mu  sync.Mutex
	n   int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{url: "http://" + ln.Addr().String() + "/hooks/zaits"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Data struct {
				Fail bool `json:"fail"`
			} `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		rc.mu.Lock()
		rc.n++
		rc.mu.Unlock()
		if ev.Data.Fail {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"the receiver refused this event on purpose"}`)
			return
		}
		io.WriteString(w, "OK")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rc
}

func (rc *receiver) requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n
}

// waitDeliveries waits until the endpoint's history lists want deliveries.
func (s *system) waitDeliveries(t *testing.T, id, query string, want int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		code, v := s.call(t, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries?per_page=1"+query, nil)
		if code != 200 {
			return fmt.Errorf("deliveries: %d %v", code, v)
		}
		if total := v["pagination"].(map[string]any)["total"].(float64); int(total) != want {
			return fmt.Errorf("deliveries%s: %v of %d", query, total, want)
		}
		return nil
	})
}
