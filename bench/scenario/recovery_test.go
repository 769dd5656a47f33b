package scenario_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
)

func recoveryConfig() *scenario.RecoveryConfig {
	rc := &scenario.RecoveryConfig{}
	rc.RegisterFlags(flag.NewFlagSet("r", flag.ContinueOnError))
	return rc
}

func TestRecoveryConfigValidate(t *testing.T) {
	f := func(change func(*scenario.RecoveryConfig), wantErr string) {
		t.Helper()
		rc := recoveryConfig()
		change(rc)
		err := rc.Validate()
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("want no error, got %v", err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("want an error about %q, got %v", wantErr, err)
		}
	}
	f(func(*scenario.RecoveryConfig) {}, "")
	f(func(c *scenario.RecoveryConfig) { c.Events = 0 }, "recovery.events")
	f(func(c *scenario.RecoveryConfig) { c.JobRate = 10001 }, "recovery.job-rate")
	f(func(c *scenario.RecoveryConfig) { c.JobsMaxRate = 0 }, "recovery.jobs-max-rate")
	f(func(c *scenario.RecoveryConfig) { c.RetrySchedule = "1s,1s" }, "recovery.retry-schedule")
	f(func(c *scenario.RecoveryConfig) { c.BatchSize = 1001 }, "recovery.batch-size")
	f(func(c *scenario.RecoveryConfig) { c.Drain = 0 }, "recovery.drain")
}

// The scenario needs its own system (the retry schedule in seconds, its
// own jobs rate): against a running one it says so and measures nothing.
func TestRecoveryRefusesARunningSystem(t *testing.T) {
	cfg := config(t, defaultKafka())
	rc := recoveryConfig()
	rc.Events = 10
	_, res := run(t, cfg, scenario.Recovery(rc))
	if res.Status != "failed" || !strings.Contains(res.Reason, "-bench.system=start") || len(res.Runs) != 0 {
		t.Fatalf("status %s (%s), %d runs: want failed, asking for -bench.system=start", res.Status, res.Reason, len(res.Runs))
	}
}

// The recovery scenario against a private instance of the real system, at
// N = 500: the endpoint answering 500 got exactly 5 attempts of each event
// and then every event once more from the recover job; the endpoint
// created afterwards got every event once from the replay; both jobs
// completed with N matched and sent; the live traffic of all three runs
// arrived complete, verified and in order; the report has the headline.
func TestRecoveryScenarioAgainstTheSystem(t *testing.T) {
	const n = 500
	bin, kc := buildZaits(t)
	cfg := config(t, kc)
	cfg.System, cfg.ZaitsBinary = "start", bin
	cfg.Warmup, cfg.Duration = time.Second, 2*time.Second
	rc := recoveryConfig()
	rc.Events, rc.Endpoints, rc.Rate, rc.BatchSize = n, 3, 20, 100
	rc.Limit = 3 * time.Minute

	su, res := run(t, cfg, scenario.Recovery(rc))
	if res.Status != "ok" || len(res.Runs) != 5 {
		t.Fatalf("recovery: %s (%s), %d runs", res.Status, res.Reason, len(res.Runs))
	}
	alone, during, recovered, duringReplay, replayed := res.Runs[0], res.Runs[1], res.Runs[2], res.Runs[3], res.Runs[4]
	for _, m := range []*suite.Measurement{alone, during, duringReplay} {
		rp := m.Receiver
		if rp.Delivered == 0 || rp.Delivered != rp.Expected || rp.Losses+rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Unexpected != 0 {
			t.Errorf("%s: receiver %+v", m.Name, rp)
		}
		if m.ReceiverLatency.Count == 0 || m.ReceiverLatency.P99 == 0 {
			t.Errorf("%s: no publish→receipt latency measured (%+v)", m.Name, m.ReceiverLatency)
		}
	}
	failing := recovered.Receiver.Endpoints["recover"]
	if failing.FailedAnswers != 5*n || failing.Attempts != 6*n+failing.Duplicates || failing.Delivered != n || failing.Expected != n || failing.Losses != 0 || failing.OrderViolations != 0 {
		t.Errorf("failing endpoint: %+v; want %d answered 500 (5 each), then %d delivered, in order", failing, 5*n, n)
	}
	backfill := replayed.Receiver.Endpoints["backfill"]
	if backfill.Attempts != n+backfill.Duplicates || backfill.Delivered != n || backfill.Expected != n || backfill.Losses+backfill.OrderViolations+backfill.Unexpected != 0 {
		t.Errorf("backfilled endpoint: %+v; want the %d events, in order", backfill, n)
	}
	for _, m := range []*suite.Measurement{recovered, replayed} {
		if m.Mode != "job" || m.Units != n || m.Ops != n || m.UnitsPerSecond <= 0 || m.Duration <= 0 || m.ReceiverLatency.Count != n {
			t.Errorf("%s: mode %s, %d delivered, %d sent, %.0f/s over %s, %d timed; want a job run of %d", m.Name, m.Mode, m.Units, m.Ops, m.UnitsPerSecond, m.Duration, m.ReceiverLatency.Count, n)
		}
	}
	// The live run beside a job lasted while the job ran: its measured
	// window ends when the receiver has all N.
	if d := during.Duration - recovered.Duration; d > time.Second || d < -time.Second {
		t.Errorf("live run beside the recover measured %s, the recover took %s", during.Duration, recovered.Duration)
	}
	headline := map[string]suite.Metric{}
	for _, h := range res.Headline {
		headline[h.Name] = h
	}
	for _, name := range []string{"recover job: sent", "replay job: sent"} {
		if h := headline[name]; h.Value != n || !strings.Contains(h.Unit, "matched 500, skipped 0; job completed") {
			t.Errorf("headline %q = %v %s; want %d sent, %d matched, 0 skipped, completed", name, h.Value, h.Unit, n, n)
		}
	}
	for _, name := range []string{"losses (expect 0)", "signature failures (expect 0)", "order violations (expect 0)"} {
		if h, ok := headline[name]; !ok || h.Value != 0 {
			t.Errorf("headline %q = %v (present %v), want 0", name, h.Value, ok)
		}
	}
	for _, name := range []string{"live alone: publish→receipt p99", "live during the recover: publish→receipt p99", "live during the replay: publish→receipt p99"} {
		if h := headline[name]; h.Value <= 0 {
			t.Errorf("headline %q = %v, want a latency", name, h.Value)
		}
	}
	report, err := os.ReadFile(filepath.Join(su.Dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## recovery (ok)", "recovered (recover job's start → receiver has all N)", "| recover 500 failed | POST …/recover", "-router.jobs-max-rate=2000", "![throughput](throughput-recovery.svg)"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}
