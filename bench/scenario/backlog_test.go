package scenario_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
)

func backlogConfig(kc *suite.Config) *scenario.BacklogConfig {
	bc := &scenario.BacklogConfig{Kafka: kc.Kafka}
	bc.RegisterFlags(flag.NewFlagSet("b", flag.ContinueOnError))
	return bc
}

func TestBacklogConfigValidate(t *testing.T) {
	f := func(change func(*scenario.BacklogConfig), wantErr string) {
		t.Helper()
		bc := backlogConfig(config(t, defaultKafka()))
		change(bc)
		err := bc.Validate()
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("want no error, got %v", err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("want an error about %q, got %v", wantErr, err)
		}
	}
	f(func(*scenario.BacklogConfig) {}, "")
	f(func(c *scenario.BacklogConfig) { c.Endpoints = 0 }, "backlog.endpoints")
	f(func(c *scenario.BacklogConfig) { c.Tasks = 50 }, "backlog.tasks")
	f(func(c *scenario.BacklogConfig) { c.BatchSize = 1001 }, "backlog.batch-size")
	f(func(c *scenario.BacklogConfig) { c.Drain = 0 }, "backlog.drain")
}

// The backlog scenario against a private instance of the real system, at
// 20 endpoints × 500 events: every queued task arrives after the receiver
// answers again, verified, once (the held attempts included) and in order,
// and the report has the drain rate.
func TestBacklogScenarioAgainstTheSystem(t *testing.T) {
	bin, kc := buildZaits(t)
	cfg := config(t, kc)
	cfg.System, cfg.ZaitsBinary = "start", bin
	bc := backlogConfig(cfg)
	bc.Endpoints, bc.Tasks, bc.BatchSize = 20, 10000, 100
	su, res := run(t, cfg, scenario.Backlog(bc))
	if res.Status != "ok" || len(res.Runs) != 1 {
		t.Fatalf("backlog: %s (%s), %d runs", res.Status, res.Reason, len(res.Runs))
	}
	m := res.Runs[0]
	rp := m.Receiver
	// The probe (20) and the backlog (10,000), each once.
	if rp.Expected != 10020 || rp.Delivered != 10020 || rp.Losses+rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Unexpected != 0 {
		t.Errorf("receiver %+v", rp)
	}
	if m.Mode != "drain" || m.Units != 10000 || m.UnitsPerSecond <= 0 || m.Duration <= 0 {
		t.Errorf("drain run: mode %s, %d delivered at %.0f/s over %s; want the 10,000 queued", m.Mode, m.Units, m.UnitsPerSecond, m.Duration)
	}
	headline := map[string]suite.Metric{}
	for _, h := range res.Headline {
		headline[h.Name] = h
	}
	if h := headline["tasks queued while the receiver was down"]; h.Value != 10000 {
		t.Errorf("queued %v, want 10000", h.Value)
	}
	if h := headline["drain rate"]; h.Value != m.UnitsPerSecond {
		t.Errorf("headline drain rate %v, run %v", h.Value, m.UnitsPerSecond)
	}
	report, err := os.ReadFile(filepath.Join(su.Dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## backlog (ok)", "drain rate", "-delivery.timeout=5m0s", "![throughput](throughput-backlog.svg)"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}
