package scenario_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/bench/system"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/internal/testenv"
)

// e2e, failures and history against private instances of the real system:
// every event reaches every endpoint, verified, in order; every event to an
// endpoint answering 500 is attempted exactly five times; the history reads
// of a loaded delivery log answer.
func TestScenariosAgainstTheSystem(t *testing.T) {
	bin, kc := buildZaits(t)
	cfg := config(t, kc)
	cfg.System, cfg.ZaitsBinary = "start", bin
	cfg.Warmup, cfg.Duration = time.Second, 2*time.Second

	ec := &scenario.E2EConfig{}
	ec.RegisterFlags(flag.NewFlagSet("e", flag.ContinueOnError))
	ec.Endpoints, ec.Rates, ec.BatchSize = 3, "40", 4
	fc := &scenario.FailuresConfig{}
	fc.RegisterFlags(flag.NewFlagSet("f", flag.ContinueOnError))
	fc.Endpoints, fc.Failing, fc.Hanging, fc.Rate = 3, 1, 0, 10
	fc.RetrySchedule = "100ms,200ms,300ms,400ms"

	hc := &scenario.HistoryConfig{}
	hc.RegisterFlags(flag.NewFlagSet("h", flag.ContinueOnError))
	hc.Rows, hc.Endpoints, hc.Concurrency = 4000, 3, 2

	su, err := suite.Run(t.Context(), cfg, []suite.Scenario{scenario.E2E(ec), scenario.Failures(fc), scenario.History(hc)}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e2e, failures := su.Results[0], su.Results[1]
	if e2e.Status != "ok" || len(e2e.Runs) != 1 {
		t.Fatalf("e2e: %s (%s)", e2e.Status, e2e.Reason)
	}
	rp := e2e.Runs[0].Receiver
	if rp.Delivered == 0 || rp.Delivered != rp.Expected || rp.Losses+rp.SignatureFailures+rp.Malformed+rp.OrderViolations != 0 {
		t.Errorf("e2e receiver: %+v", rp)
	}
	if z, b := cpuOf(t, e2e.Runs[0], "zaits"), cpuOf(t, e2e.Runs[0], "bench"); z.Absent != "" || *z.Seconds <= 0 || b.Absent != "" || *b.Seconds <= 0 {
		t.Errorf("e2e CPU: zaits %+v, bench %+v: want both measured, > 0", z, b)
	}
	if failures.Status != "ok" || len(failures.Runs) != 2 {
		t.Fatalf("failures: %s (%s)", failures.Status, failures.Reason)
	}
	failing := failures.Runs[1].Receiver.Endpoints["e0"]
	if failing.Expected < 2 || failing.Attempts != 1+5*(failing.Expected-1) {
		t.Errorf("failing endpoint: %d attempts for %d events (1 probe delivered): want 5 per failing event", failing.Attempts, failing.Expected)
	}
	history := su.Results[2]
	if history.Status != "ok" || len(history.Runs) != 3 {
		t.Fatalf("history: %s (%s)", history.Status, history.Reason)
	}
	for _, m := range history.Runs {
		if m.Units == 0 || m.Errors != 0 {
			t.Errorf("history %s: %d queries, %d errors (%s)", m.Name, m.Units, m.Errors, m.FirstError)
		}
	}
}

// e2e-steady against a private instance of the real system: one event per
// POST /v1/events, in order, every one verified at every endpoint; the run
// reports the CPU of the private zaits (its process) and of the bench.
func TestE2ESteadyAgainstTheSystem(t *testing.T) {
	bin, kc := buildZaits(t)
	cfg := config(t, kc)
	cfg.System, cfg.ZaitsBinary = "start", bin
	cfg.Warmup, cfg.Duration = time.Second, 3*time.Second
	ec := &scenario.E2EConfig{Steady: true}
	ec.RegisterFlags(flag.NewFlagSet("e", flag.ContinueOnError))
	if err := ec.Validate(); err != nil || ec.BatchSize != 1 {
		t.Fatalf("steady defaults: batch %d, %v", ec.BatchSize, err)
	}
	ec.Endpoints, ec.Rates = 3, "100"
	su, res := run(t, cfg, scenario.E2E(ec))
	if res.Scenario != "e2e-steady" || res.Status != "ok" || len(res.Runs) != 1 {
		t.Fatalf("%s: %s (%s)", res.Scenario, res.Status, res.Reason)
	}
	m := res.Runs[0]
	rp := m.Receiver
	if rp.Delivered == 0 || rp.Delivered != rp.Expected || rp.Losses+rp.SignatureFailures+rp.Malformed+rp.OrderViolations != 0 {
		t.Errorf("receiver: %+v", rp)
	}
	// One event per request: the requests are the events, 100/s over 3 s.
	if !strings.Contains(m.Path, "POST /v1/events →") || m.Ops < 200 || m.OfferedPerSecond < 0.9*float64(ec.Endpoints)*100 {
		t.Errorf("path %q, %d requests, %.0f deliveries/s accepted: want single-event requests at 100/s", m.Path, m.Ops, m.OfferedPerSecond)
	}
	if m.CPU == nil || m.CPU.Deliveries != m.Units || m.CPU.Window < 2 {
		t.Fatalf("CPU report %+v, want one over the %d measured deliveries", m.CPU, m.Units)
	}
	for _, name := range []string{"zaits", "bench"} {
		if p := cpuOf(t, m, name); p.Absent != "" || p.Pid == 0 || *p.Seconds <= 0 || *p.PerThousand <= 0 || *p.Cores <= 0 {
			t.Errorf("%s: %+v, want measured, > 0", name, p)
		}
	}
	report, _ := os.ReadFile(filepath.Join(su.Dir, "report.md"))
	t.Logf("CPU table:%s", report[strings.Index(string(report), "\nCPU seconds"):strings.Index(string(report), "![throughput]")])
}

// Every e2e run deletes its endpoints when it ends. Left active (the bug
// this reproduces), a second rate's events also went to the first run's
// endpoints, at a receiver that was gone: the second run measured the
// system delivering twice the traffic, half of it failing and retried.
func TestE2ERunsLeaveNoEndpointsBehind(t *testing.T) {
	bin, kc := buildZaits(t)
	s, err := system.Start(t.Context(), system.Config{Binary: bin, Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	cfg := config(t, kc)
	cfg.GatewayURL, cfg.Token, cfg.APIKey, cfg.Account = s.GatewayURL, flagenv.Secret(s.ServiceToken), flagenv.Secret(s.APIKey), s.Account
	ec := &scenario.E2EConfig{}
	ec.RegisterFlags(flag.NewFlagSet("e", flag.ContinueOnError))
	ec.Endpoints, ec.Rates, ec.BatchSize = 3, "20,20", 4
	_, res := run(t, cfg, scenario.E2E(ec))
	if res.Status != "ok" || len(res.Runs) != 2 {
		t.Fatalf("e2e: %s (%s)", res.Status, res.Reason)
	}
	for _, m := range res.Runs {
		if rp := m.Receiver; rp.Delivered == 0 || rp.Delivered != rp.Expected || rp.Losses != 0 {
			t.Errorf("%s: receiver %+v", m.Name, rp)
		}
	}
	code, body := getJSON(t, s.GatewayURL+"/v1/webhooks/endpoints", s.APIKey)
	var list struct {
		Pagination struct {
			Total int `json:"total"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || list.Pagination.Total != 0 {
		t.Fatalf("after two runs: %d %s (%v); want no endpoints left", code, body, err)
	}
}

// getJSON makes a GET with an API key and returns the status and body.
func getJSON(t *testing.T, url, key string) (int, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", "Bearer "+key)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// buildZaits builds the zaits binary into a temporary folder and returns
// it with a Kafka configuration of at most two partitions per topic.
func buildZaits(t *testing.T) (string, *broker.Config) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zaits")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/zaits/webhooks/cmd/zaits").CombinedOutput(); err != nil {
		t.Fatalf("build zaits: %v\n%s", err, out)
	}
	kc := defaultKafka()
	for name := range kc.Partitions {
		kc.Partitions[name] = min(kc.Partitions[name], 2)
	}
	return bin, kc
}
