package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/suite"
)

// Attempts is how many attempts the retry policy makes before a delivery fails.
const Attempts = 5

// FailuresConfig configures the failures scenario. RegisterFlags sets the documented defaults.
type FailuresConfig struct {
	// Endpoints is the number of endpoints (N). Default 10.
	Endpoints int
	// Failing is how many of them answer 500 to everything. Default 2.
	Failing int
	// Hanging is how many of them never answer (until the dispatcher's timeout). Default 1.
	Hanging int
	// Rate is the events published per second. Default 50.
	Rate float64
	// RetrySchedule is the system's retry schedule, scaled to seconds. Default "1s,2s,3s,4s".
	RetrySchedule string
	// Timeout is the system's attempt timeout, scaled like the schedule. Default 1s.
	Timeout time.Duration
	// Drain is how long the wait for healthy deliveries and the failing
	// endpoints' attempts goes on without any request reaching the receiver
	// (at most 4× in all). Default 15s.
	Drain time.Duration
}

// RegisterFlags registers the failures.* flags.
func (c *FailuresConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Endpoints, "failures.endpoints", 10, "endpoints at the receiver (N)")
	fs.IntVar(&c.Failing, "failures.failing", 2, "endpoints answering 500 to everything")
	fs.IntVar(&c.Hanging, "failures.hanging", 1, "endpoints that never answer")
	fs.Float64Var(&c.Rate, "failures.rate", 50, "events published per second (each goes to all N)")
	fs.StringVar(&c.RetrySchedule, "failures.retry-schedule", "1s,2s,3s,4s", "the system's retry schedule for the run (-dispatcher.retry-schedule), scaled to seconds")
	fs.DurationVar(&c.Timeout, "failures.timeout", time.Second, "the system's attempt timeout for the run (-delivery.timeout), scaled like the schedule")
	fs.DurationVar(&c.Drain, "failures.drain", 15*time.Second, "wait for healthy deliveries and every failing attempt until no request arrived for this long (at most 4× in all)")
}

// Validate reports every problem at once.
func (c *FailuresConfig) Validate() error {
	var errs []error
	if c.Endpoints < 2 || c.Failing < 0 || c.Hanging < 0 || c.Failing+c.Hanging >= c.Endpoints {
		errs = append(errs, fmt.Errorf("failures: need at least one healthy endpoint: endpoints %d, failing %d, hanging %d", c.Endpoints, c.Failing, c.Hanging))
	}
	if c.Rate <= 0 || c.Timeout <= 0 || c.Drain <= 0 {
		errs = append(errs, errors.New("failures.rate, failures.timeout and failures.drain: must be positive"))
	}
	if strings.Count(c.RetrySchedule, ",") != Attempts-2 {
		errs = append(errs, fmt.Errorf("failures.retry-schedule: want %d waits, got %q", Attempts-1, c.RetrySchedule))
	}
	return errors.Join(errs...)
}

// Failures measures isolation and the retry policy: a run with every
// endpoint healthy, then one where some answer 500 and some hang, with the
// retry schedule scaled to seconds. It reports the healthy endpoints'
// latency in both runs side by side and the exact attempt counts of the
// failing endpoints (every event: exactly 5 attempts).
func Failures(cfg *FailuresConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "failures",
		About: "Some endpoints answer 500 or hang, with the retry schedule scaled to seconds: the healthy endpoints' latency next to a run without failures (isolation), and exact attempt counts for the failing ones.",
		Estimate: func(sc *suite.Config) time.Duration {
			return 2*(sc.Warmup+sc.Duration) + cfg.Drain + 25*time.Second
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			target, stop, err := env.System(ctx, "-dispatcher.retry-schedule="+cfg.RetrySchedule, "-delivery.timeout="+cfg.Timeout.String())
			if err != nil {
				return nil, fmt.Errorf("system: %w", err)
			}
			defer stop()
			if !target.Started {
				return nil, errors.New("the failures scenario needs the retry schedule scaled to seconds, so it starts its own system: run it with -bench.system=start")
			}
			res := &suite.Result{}
			// Endpoints 0..Failing-1 answer 500, the next Hanging ones hang, the rest are healthy.
			behave := map[int]receiver.Behaviour{}
			for i := range cfg.Failing {
				behave[i] = receiver.Behaviour{Status: 500}
			}
			for i := cfg.Failing; i < cfg.Failing+cfg.Hanging; i++ {
				behave[i] = receiver.Behaviour{Hang: true}
			}
			// The probe event reached every endpoint before they started
			// failing: one delivered event each, the rest must fail Attempts times.
			wantAttempts := func(er receiver.EndpointReport) int64 { return er.Delivered + Attempts*(er.Expected-er.Delivered) }
			allAttempted := func(rp receiver.Report, names []string) bool {
				for i := range cfg.Failing {
					if er := rp.Endpoints[names[i]]; er.Attempts < wantAttempts(er) {
						return false
					}
				}
				return true
			}
			base := deliveryPlan{endpoints: cfg.Endpoints, rate: cfg.Rate, batch: max(1, int(cfg.Rate/20)), drain: cfg.Drain}
			baseline, healthyBase, err := failuresRun(ctx, env, target, base, "all healthy", nil)
			if baseline == nil {
				return res, err
			}
			res.Runs = append(res.Runs, baseline)
			if err != nil {
				return res, err
			}
			plan := base
			plan.behave, plan.done = behave, allAttempted
			plan.receiverConfig = receiver.Config{HangLimit: 3 * cfg.Timeout}
			failing, healthyFail, err := failuresRun(ctx, env, target, plan, fmt.Sprintf("%d failing, %d hanging", cfg.Failing, cfg.Hanging), behave)
			if failing == nil {
				return res, err
			}
			res.Runs = append(res.Runs, failing)
			drainErr := err

			res.Headline = []suite.Metric{
				{Name: "healthy p50, all healthy", Value: float64(healthyBase.P50) / 1000, Unit: "ms"},
				{Name: "healthy p50, with failures", Value: float64(healthyFail.P50) / 1000, Unit: "ms"},
				{Name: "healthy p99, all healthy", Value: float64(healthyBase.P99) / 1000, Unit: "ms"},
				{Name: "healthy p99, with failures", Value: float64(healthyFail.P99) / 1000, Unit: "ms"},
			}
			var problems []string
			rp := failing.Receiver
			names := sortedEndpointNames(cfg.Endpoints)
			for i := range cfg.Failing + cfg.Hanging {
				er := rp.Endpoints[names[i]]
				kind := "500"
				if behave[i].Hang {
					kind = "hanging"
				}
				failed, attempts := er.Expected-er.Delivered, er.Attempts-er.Delivered
				per := 0.0
				if failed > 0 {
					per = float64(attempts) / float64(failed)
				}
				res.Headline = append(res.Headline, suite.Metric{Name: fmt.Sprintf("attempts per failing event, endpoint %s (%s)", names[i], kind), Value: per, Unit: fmt.Sprintf("(%d attempts for %d events)", attempts, failed)})
				if !behave[i].Hang && attempts != Attempts*failed {
					problems = append(problems, fmt.Sprintf("endpoint %s answered 500 to %d attempts for %d events, want exactly %d each", names[i], attempts, failed, Attempts))
				}
				if er.Delivered != 1 {
					problems = append(problems, fmt.Sprintf("endpoint %s recorded %d deliveries, want 1 (the probe, before it started failing)", names[i], er.Delivered))
				}
			}
			var healthyLoss, order, sig int64
			for i := cfg.Failing + cfg.Hanging; i < cfg.Endpoints; i++ {
				er := rp.Endpoints[names[i]]
				healthyLoss += er.Losses
				order += er.OrderViolations
			}
			sig = rp.SignatureFailures + rp.Malformed
			res.Headline = append(res.Headline,
				suite.Metric{Name: "healthy endpoints' losses (expect 0)", Value: float64(healthyLoss)},
				suite.Metric{Name: "healthy endpoints' order violations (expect 0)", Value: float64(order)},
				suite.Metric{Name: "signature failures (expect 0)", Value: float64(sig)})
			if healthyLoss+order+sig > 0 {
				problems = append(problems, fmt.Sprintf("healthy endpoints: %d losses, %d order violations; %d signature failures", healthyLoss, order, sig))
			}
			res.Notes = append(res.Notes,
				fmt.Sprintf("Private zaits with `-dispatcher.retry-schedule=%s -delivery.timeout=%s`: the seed's 1m, 5m, 30m, 2h and 10 s scaled to seconds.", cfg.RetrySchedule, cfg.Timeout),
				fmt.Sprintf("Endpoints %s answer 500 to everything; %s never answer (the receiver holds them %s); the rest answer 200 at once.",
					strings.Join(names[:cfg.Failing], ", "), strings.Join(names[cfg.Failing:cfg.Failing+cfg.Hanging], ", "), 3*cfg.Timeout),
				"Losses in the failing run's receiver table include the failing endpoints' events, which are expected to fail (they go to <p>.dead); the headline counts healthy endpoints only.",
				"A hanging endpoint holds its one in-flight attempt for the whole timeout, so its attempts lag behind; its count is what was attempted by the end of the drain.",
				"Attempt counts leave out the probe event, which every endpoint received (200) before the failing ones started failing.")
			if drainErr != nil && !errors.Is(drainErr, errNotDrained) {
				return res, drainErr
			}
			if drainErr != nil {
				problems = append(problems, "not every expected delivery and attempt arrived: "+drainErr.Error())
			}
			if len(problems) > 0 {
				return res, errors.New(strings.Join(problems, "; "))
			}
			return res, nil
		},
	}
}

// failuresRun runs plan and returns the measurement and the latency of the
// healthy endpoints only.
func failuresRun(ctx context.Context, env *suite.Env, t *suite.Target, plan deliveryPlan, name string, behave map[int]receiver.Behaviour) (*suite.Measurement, suite.Latency, error) {
	plan.name = name + " (" + load.Thousands(plan.rate) + " events/s)"
	m, err := deliver(ctx, env, t, plan)
	if m == nil {
		return nil, suite.Latency{}, err
	}
	h := receiver.NewLatencyHistogram()
	names := sortedEndpointNames(plan.endpoints)
	for i, n := range names {
		if _, bad := behave[i]; !bad {
			h.Merge(m.Receiver.Endpoints[n].Latency)
		}
	}
	return m, suite.Summarize(h), err
}

// sortedEndpointNames are the receiver names deliver gives endpoints 0..n-1.
func sortedEndpointNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = endpointName(i)
	}
	return out
}
