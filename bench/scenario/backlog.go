package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// BacklogConfig configures the backlog scenario. RegisterFlags sets the documented defaults.
type BacklogConfig struct {
	// Endpoints is N; every event goes to all of them. Default 100.
	Endpoints int
	// Tasks is how many delivery tasks are queued while the receiver is
	// down: Tasks ÷ Endpoints events are published. Default 1,000,000.
	Tasks int
	// BatchSize is the events per publish request. Default 500.
	BatchSize int
	// Timeout is the system's attempt timeout for the run (-delivery.timeout):
	// longer than the outage, so that the held attempts are answered, not
	// timed out. Default 5m (the most -delivery.timeout takes).
	Timeout time.Duration
	// Drain is how long the drain goes on without any request reaching the
	// receiver before it is called incomplete. Default 30s.
	Drain time.Duration
	// Kafka reads the end offsets of the system's <p>.deliveries (its
	// brokers; the prefix is the system's). Set by the command.
	Kafka *broker.Config
}

// RegisterFlags registers the backlog.* flags.
func (c *BacklogConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Endpoints, "backlog.endpoints", 100, "endpoints at the receiver (N); every event goes to all of them")
	fs.IntVar(&c.Tasks, "backlog.tasks", 1000000, "delivery tasks queued while the receiver is down (tasks ÷ endpoints events)")
	fs.IntVar(&c.BatchSize, "backlog.batch-size", 500, "events per publish request")
	fs.DurationVar(&c.Timeout, "backlog.timeout", 5*time.Minute, "the system's attempt timeout for the run (-delivery.timeout, at most 5m), longer than the outage")
	fs.DurationVar(&c.Drain, "backlog.drain", 30*time.Second, "the drain is incomplete when no request reached the receiver for this long")
}

// Validate reports every problem at once.
func (c *BacklogConfig) Validate() error {
	var errs []error
	if c.Endpoints < 1 || c.Endpoints > 10000 {
		errs = append(errs, fmt.Errorf("backlog.endpoints: must be 1..10000, got %d", c.Endpoints))
	}
	if c.Tasks < c.Endpoints || c.Tasks/max(c.Endpoints, 1) >= receiver.MaxSeq-1 {
		errs = append(errs, fmt.Errorf("backlog.tasks: must be at least backlog.endpoints and below %d per endpoint, got %d", receiver.MaxSeq-1, c.Tasks))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("backlog.batch-size: must be 1..1000, got %d", c.BatchSize))
	}
	if c.Timeout <= 0 || c.Drain <= 0 {
		errs = append(errs, errors.New("backlog.timeout and backlog.drain: must be positive"))
	}
	return errors.Join(errs...)
}

// events is the number of events the run publishes.
func (c *BacklogConfig) events() int { return c.Tasks / c.Endpoints }

// Backlog: the receiver stops answering (it holds every request open, one
// in flight per endpoint) while Tasks tasks are queued in <p>.deliveries,
// then answers again; the drain rate is the deliveries/s from then until
// the last task arrived.
func Backlog(cfg *BacklogConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "backlog",
		About: "Holds every request at the receiver (an outage with connections left open) while backlog.tasks delivery tasks queue up across backlog.endpoints endpoints, then lets it answer, and measures the drain: deliveries/s from then until the last one arrived, next to the best steady e2e rate of the same run.",
		Estimate: func(sc *suite.Config) time.Duration {
			// Publishing and routing at ≥ 50k tasks/s, the drain at ≥ 10k/s, start and stop.
			return time.Duration(cfg.Tasks/50000+cfg.Tasks/10000)*time.Second + cfg.Drain + time.Minute
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			target, stop, err := env.System(ctx, "-delivery.timeout="+cfg.Timeout.String())
			if err != nil {
				return nil, fmt.Errorf("system: %w", err)
			}
			defer stop()
			if !target.Started {
				return nil, errors.New("the backlog scenario starts its own system (the attempt timeout must outlast the outage): use -bench.system=start")
			}
			return runBacklog(ctx, env, target, cfg)
		},
	}
}

func runBacklog(ctx context.Context, env *suite.Env, t *suite.Target, cfg *BacklogConfig) (*suite.Result, error) {
	rcv, closeReceiver, err := startReceiver(receiver.Config{})
	if err != nil {
		return nil, err
	}
	defer closeReceiver()
	run := RunID()
	names := make([]string, cfg.Endpoints)
	for i := range names {
		names[i] = endpointName(i)
		ep, err := createEndpoint(ctx, t, rcv.URL(names[i]), "zaits-bench backlog "+run, []string{EventType})
		if err != nil {
			return nil, err
		}
		rcv.Register(receiver.Endpoint{Name: names[i], ID: ep.ID, Secrets: []string{ep.Secret}})
	}
	pub := &publisher{target: t, run: run, client: &fasthttp.Client{
		MaxConnsPerHost: 4, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxResponseBodySize: 4 << 20, MaxIdemponentCallAttempts: 1,
	}}
	expect := func(seqs []int64) error {
		for _, n := range names {
			for _, s := range seqs {
				if err := rcv.Expect(n, s, time.Time{}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	kc := *cfg.Kafka
	kc.TopicPrefix = t.TopicPrefix
	cl := kc.Client()
	queued := func() (int64, error) {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, last, err := broker.Offsets(qctx, cl, kc.Topic(schemas.TopicDeliveries))
		var n int64
		for _, o := range last {
			n += o
		}
		return n, err
	}

	// Probe: one event reaches every endpoint before the outage.
	seqs, err := pub.publish(ctx, []int64{0})
	if err != nil {
		return nil, fmt.Errorf("probe event: %w", err)
	}
	if err := expect(seqs); err != nil {
		return nil, err
	}
	if !waitFor(ctx, 30*time.Second, func() bool { return rcv.Outstanding() == 0 }) {
		return nil, fmt.Errorf("the probe event did not reach every endpoint within 30s (delivered %d of %d)", rcv.Delivered(), len(names))
	}
	before, err := queued()
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", kc.Topic(schemas.TopicDeliveries), err)
	}

	procs := env.Processes(ctx, t)
	// The outage: every request is held open from now on.
	for _, n := range names {
		if err := rcv.SetBehaviour(n, receiver.Behaviour{Hold: true}); err != nil {
			return nil, err
		}
	}
	outage := time.Now()
	outageCPU := procs.Sample()
	var accepted int64
	for next := int64(1); next <= int64(cfg.events()); {
		batch := make([]int64, 0, cfg.BatchSize)
		for ; len(batch) < cfg.BatchSize && next <= int64(cfg.events()); next++ {
			batch = append(batch, next)
		}
		got, err := pub.publish(ctx, batch)
		if e := expect(got); e != nil {
			return nil, e
		}
		accepted += int64(len(got))
		if err != nil {
			return nil, fmt.Errorf("publishing the backlog: %w", err)
		}
	}
	published := time.Since(outage)
	want := accepted * int64(len(names))
	var routed int64
	if !waitFor(ctx, 10*time.Minute, func() bool {
		n, err := queued()
		routed = n - before
		return err == nil && routed >= want
	}) {
		return nil, fmt.Errorf("only %d of %d tasks reached %s within 10 minutes", routed, want, kc.Topic(schemas.TopicDeliveries))
	}
	queuedIn := time.Since(outage)
	queueCPU := procs.Usage(outageCPU, procs.Sample(), routed)
	held := rcv.Report().Requests
	env.Log.Info("backlog queued", "tasks", routed, "events", accepted, "published_in", published.Round(time.Millisecond), "queued_in", queuedIn.Round(time.Millisecond), "held_requests", held)

	// The receiver answers again: the drain.
	deliveredBefore := rcv.Delivered()
	release := time.Now()
	tl := newTimeline(rcv, procs, release, 0)
	for _, n := range names {
		if err := rcv.SetBehaviour(n, receiver.Behaviour{}); err != nil {
			tl.stop()
			return nil, err
		}
	}
	drained := drainUntil(ctx, cfg.Drain, time.Hour, rcv.Requests, func() bool { return rcv.Outstanding() == 0 })
	took := time.Since(release)
	if !drained {
		took -= cfg.Drain // the time since the last request was idle
	}
	end := release.Add(took)
	tl.stop()
	rep := rcv.Report()
	delivered := rcv.Delivered() - deliveredBefore

	stats := &load.Stats{Name: fmt.Sprintf("drain of %s tasks, %d endpoints", load.Thousands(float64(routed)), len(names)), Mode: "drain",
		Duration: took, Units: delivered, Latency: load.NewHistogram()}
	m := suite.NewMeasurement(stats, "deliveries", "<p>.deliveries backlog → dispatcher → receiver", &rep)
	m.Timeline = tl.samples
	m.CPU = tl.cpuBetween(release, end)
	res := &suite.Result{Runs: []*suite.Measurement{m}}
	rate := m.UnitsPerSecond
	res.Headline = append(res.Headline,
		suite.Metric{Name: "tasks queued while the receiver was down", Value: float64(routed), Unit: "tasks"},
		suite.Metric{Name: "publish + fan-out of the backlog", Value: float64(routed) / queuedIn.Seconds(), Unit: "tasks/s"},
		suite.Metric{Name: "drain rate", Value: rate, Unit: "deliveries/s"},
		suite.Metric{Name: "drain time", Value: took.Seconds(), Unit: "s"})
	if e2e := env.Find("e2e"); e2e != nil {
		var best float64
		for _, r := range e2e.Runs {
			best = max(best, r.UnitsPerSecond)
		}
		if best > 0 {
			res.Headline = append(res.Headline, suite.Metric{Name: "drain rate / best sustained e2e of this run (target ≥ 100)", Value: 100 * rate / best, Unit: "%"})
		}
	}
	if ceil := env.Ceiling(); ceil > 0 {
		res.Headline = append(res.Headline, suite.Metric{Name: "drain rate / ceiling", Value: 100 * rate / ceil, Unit: "%"})
	}
	res.Headline = append(res.Headline,
		suite.Metric{Name: "signature failures (expect 0)", Value: float64(rep.SignatureFailures + rep.Malformed)},
		suite.Metric{Name: "order violations (expect 0)", Value: float64(rep.OrderViolations)},
		suite.Metric{Name: "duplicates (expect few)", Value: float64(rep.Duplicates)},
		suite.Metric{Name: "losses (expect 0)", Value: float64(rep.Losses)})
	res.Notes = append(res.Notes,
		fmt.Sprintf("The outage: from the end of the probe on, the receiver held every request open (one attempt in flight per endpoint, the dispatcher's -delivery.timeout=%s outlasts it), while %d events × %d endpoints were published in batches of %d (%s) and fanned out into <p>.deliveries (all %d tasks there %s after the outage began). Then it answered 200 again, the held attempts first.", cfg.Timeout, accepted, len(names), cfg.BatchSize, published.Round(time.Millisecond), routed, queuedIn.Round(time.Millisecond)),
		"The drain rate is the distinct verified deliveries from the moment the receiver answered again until the last expected one arrived, divided by that time; the chart is its per-second rate. Latencies are not timed here (accepted→receipt would be the outage).",
		"CPU of the queueing phase (publishing and fan-out, per 1,000 tasks queued): "+cpuLine(queueCPU)+"; the table above is the drain's, per 1,000 deliveries.",
		"Measured on a private zaits started for this scenario: `zaits "+strings.Join(t.Args, " ")+"`")
	var faults []string
	if n := rep.SignatureFailures + rep.Malformed + rep.OrderViolations + rep.Losses; n > 0 {
		faults = append(faults, fmt.Sprintf("%d signature failures, %d malformed, %d order violations, %d losses", rep.SignatureFailures, rep.Malformed, rep.OrderViolations, rep.Losses))
	}
	if !drained {
		faults = append(faults, fmt.Sprintf("%v: %d of %d tasks delivered, none for %s", errNotDrained, delivered, routed, cfg.Drain))
	}
	if len(faults) > 0 {
		return res, errors.New(strings.Join(faults, "; "))
	}
	return res, nil
}

// cpuLine is a report's per-1,000 CPU seconds, one "process x s" per process.
func cpuLine(r *suite.CPUReport) string {
	var parts []string
	for _, p := range r.Processes {
		switch {
		case p.Absent != "":
			parts = append(parts, p.Process+" absent")
		case p.PerThousand != nil:
			parts = append(parts, fmt.Sprintf("%s %.3f s", p.Process, *p.PerThousand))
		}
	}
	return strings.Join(parts, ", ")
}
