package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/suite"
)

// E2EConfig configures the e2e scenario. RegisterFlags sets the documented defaults.
type E2EConfig struct {
	// Endpoints is the number of endpoints (N) registered at the receiver;
	// every event fans out to all of them. Default 10.
	Endpoints int
	// Rates are the events published per second (R), one run each, comma
	// separated; deliveries/s offered is N×R. The first, low rate gives the
	// latency headline, the highest sustained one the ceiling ratio. Default "200,800".
	Rates string
	// BatchSize is the events per publish request (POST /v1/events/batch). Default 20.
	BatchSize int
	// Drain is how long the wait for the last deliveries after publishing
	// stops goes on without any request reaching the receiver; while
	// deliveries keep arriving it goes on, up to 4×Drain in all. Default 15s.
	Drain time.Duration
	// Steady publishes one event per request (POST /v1/events) at an even
	// pace instead of batches: the e2e-steady scenario, whose latency is the
	// pipeline's and not a batch's queueing. Set it before RegisterFlags:
	// the flags are then e2e-steady.*, with no batch size (always 1) and
	// rates 20,75,150 by default.
	Steady bool
}

// name is the scenario's name and flag prefix: "e2e" or "e2e-steady".
func (c *E2EConfig) name() string {
	if c.Steady {
		return "e2e-steady"
	}
	return "e2e"
}

// RegisterFlags registers the e2e.* flags (e2e-steady.* when Steady).
func (c *E2EConfig) RegisterFlags(fs *flag.FlagSet) {
	p, rates := c.name(), "20,150"
	if c.Steady {
		rates, c.BatchSize = "20,75,150", 1
	}
	fs.IntVar(&c.Endpoints, p+".endpoints", 100, "endpoints at the receiver (N, the ceiling's count); every event goes to all of them")
	fs.StringVar(&c.Rates, p+".rates", rates, "comma-separated events/s to publish (R), one run each; deliveries/s offered = N×R")
	if !c.Steady {
		fs.IntVar(&c.BatchSize, p+".batch-size", 20, "events per publish request (POST /v1/events/batch)")
	}
	fs.DurationVar(&c.Drain, p+".drain", 15*time.Second, "after publishing stops, wait for the last deliveries until none arrived for this long (at most 4× in all)")
}

// Validate reports every problem at once.
func (c *E2EConfig) Validate() error {
	var errs []error
	p := c.name()
	if c.Endpoints < 1 || c.Endpoints > 10_000 {
		errs = append(errs, fmt.Errorf("%s.endpoints: must be 1..10000, got %d", p, c.Endpoints))
	}
	if _, err := c.RateList(); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 || (c.Steady && c.BatchSize != 1) {
		errs = append(errs, fmt.Errorf("%s.batch-size: must be 1..1000 (1 when steady), got %d", p, c.BatchSize))
	}
	if c.Drain <= 0 {
		errs = append(errs, fmt.Errorf("%s.drain: must be positive", p))
	}
	return errors.Join(errs...)
}

// RateList parses Rates.
func (c *E2EConfig) RateList() ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(c.Rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("%s.rates: %q is not a positive number", c.name(), f)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s.rates: at least one rate is required", c.name())
	}
	return out, nil
}

// E2E measures the whole system: events published over HTTP are routed,
// dispatched and delivered to the bench's verifying receiver. With
// cfg.Steady it is e2e-steady: one event per request, evenly paced.
func E2E(cfg *E2EConfig) suite.Scenario {
	about := "Registers N endpoints at the bench's verifying receiver, publishes events at rate R over HTTP in batches (each event goes to all N), and measures sustained deliveries/s, publish→receipt latency, and signature failures, order violations, duplicates and losses."
	if cfg.Steady {
		about = "As e2e, but publishing one event per request (POST /v1/events) at an even pace, in sequence order: publish→receipt latency is the pipeline's, not a batch's queueing."
	}
	return suite.Scenario{
		Name:  cfg.name(),
		About: about,
		Estimate: func(sc *suite.Config) time.Duration {
			rates, _ := cfg.RateList()
			return time.Duration(len(rates))*(sc.Warmup+sc.Duration+cfg.Drain/2+5*time.Second) + 10*time.Second
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			target, stop, err := env.System(ctx)
			if err != nil {
				return nil, fmt.Errorf("system: %w", err)
			}
			defer stop()
			res := &suite.Result{}
			rates, err := cfg.RateList()
			if err != nil {
				return nil, err
			}
			var best float64
			var faults []string
			for i, rate := range rates {
				// One publisher keeps acceptance order = sequence order; batches
				// grow with the rate so it needs at most 10 requests/s
				// (steady: one event per request, R requests/s).
				batch := min(max(cfg.BatchSize, int(rate/10)), 1000)
				if cfg.Steady {
					batch = 1
				}
				m, err := deliver(ctx, env, target, deliveryPlan{
					name:      fmt.Sprintf("%d endpoints × %s events/s", cfg.Endpoints, load.Thousands(rate)),
					endpoints: cfg.Endpoints, rate: rate, batch: batch, single: cfg.Steady, drain: cfg.Drain,
				})
				if m == nil {
					return res, err
				}
				res.Runs = append(res.Runs, m)
				offered := float64(cfg.Endpoints) * rate
				res.Headline = append(res.Headline,
					suite.Metric{Name: "accepted for delivery at " + load.Thousands(offered) + " offered", Value: m.OfferedPerSecond, Unit: "deliveries/s"},
					suite.Metric{Name: "sustained at " + load.Thousands(offered) + " offered", Value: m.UnitsPerSecond, Unit: "deliveries/s"})
				best = max(best, m.UnitsPerSecond)
				rp, l := m.Receiver, m.ReceiverLatency
				res.Headline = append(res.Headline,
					suite.Metric{Name: "publish→receipt p50 at " + load.Thousands(offered) + "/s", Value: float64(l.P50) / 1000, Unit: "ms"},
					suite.Metric{Name: "publish→receipt p99 at " + load.Thousands(offered) + "/s", Value: float64(l.P99) / 1000, Unit: "ms"})
				if i == 0 {
					res.Headline = append(res.Headline,
						suite.Metric{Name: "publish→receipt p99.9 at " + load.Thousands(offered) + "/s", Value: float64(l.P999) / 1000, Unit: "ms"},
						suite.Metric{Name: "publish→receipt max at " + load.Thousands(offered) + "/s", Value: float64(l.Max) / 1000, Unit: "ms"})
				}
				if rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Losses > 0 {
					faults = append(faults, fmt.Sprintf("%s: %d signature failures, %d malformed, %d order violations, %d losses",
						m.Name, rp.SignatureFailures, rp.Malformed, rp.OrderViolations, rp.Losses))
				}
				if err != nil {
					faults = append(faults, m.Name+": "+err.Error())
				}
			}
			var sig, order, dups, losses int64
			for _, m := range res.Runs {
				sig += m.Receiver.SignatureFailures + m.Receiver.Malformed
				order += m.Receiver.OrderViolations
				dups += m.Receiver.Duplicates
				losses += m.Receiver.Losses
			}
			if ceil := env.Ceiling(); ceil > 0 {
				res.Headline = append(res.Headline, suite.Metric{Name: "ceiling ratio (best sustained)", Value: 100 * best / ceil, Unit: "% of the ceiling"})
			}
			res.Headline = append(res.Headline,
				suite.Metric{Name: "signature failures (expect 0)", Value: float64(sig)},
				suite.Metric{Name: "order violations (expect 0)", Value: float64(order)},
				suite.Metric{Name: "duplicates (expect few)", Value: float64(dups)},
				suite.Metric{Name: "losses (expect 0)", Value: float64(losses)})
			if target.Started {
				res.Notes = append(res.Notes, "Measured on a private zaits started for this scenario: `zaits "+strings.Join(target.Args, " ")+"`")
			}
			publisherNote := "One publisher sends the batches in sequence order, so acceptance order is sequence order and any order violation is the system's; batches hold max(e2e.batch-size, R/10) events so it needs at most 10 requests/s."
			if cfg.Steady {
				publisherNote = "One publisher sends one event per request (POST /v1/events) at R requests/s, each due 1/R after the previous one and sent when the previous one was answered, so acceptance order is sequence order and any order violation is the system's. When one request takes longer than 1/R the next ones are late, and that lateness is in the latency (measured from when each was due): compare \"accepted for delivery\" with the offered rate."
			}
			res.Notes = append(res.Notes,
				publisherNote+" \"Accepted for delivery\" is what the gateway accepted (events × N) per second: when it is below the offered rate, ingestion (or the publisher) was the limit, not delivery.",
				"Latency is from when each publish request was due (open loop, coordinated omission corrected) to the receiver's arrival time: it includes the ingest request. Events published during the warm-up are checked for loss, order and duplicates but not timed.",
				"Deliveries/s counts distinct verified deliveries the receiver answered 200 to during the measured window.")
			if len(faults) > 0 {
				return res, errors.New(strings.Join(faults, "; "))
			}
			return res, nil
		},
	}
}

// deliveryPlan is one publish-and-receive run through the system.
type deliveryPlan struct {
	name      string
	endpoints int
	rate      float64 // events/s
	batch     int
	drain     time.Duration
	// single publishes with POST /v1/events, one event per request (batch 1).
	single bool
	// behave sets how endpoint i answers once the probe went through (failures scenario).
	behave map[int]receiver.Behaviour
	// receiverConfig configures the receiver (zero: defaults).
	receiverConfig receiver.Config
	// done, when set, must also hold before the drain ends (failures: every
	// attempt made), given the report and the endpoint names.
	done func(rp receiver.Report, names []string) bool
	// alongside, when set, runs from the end of the warm-up on, beside the
	// live traffic (recovery: a job and the wait for its deliveries); the
	// measured window ends when it returns, or after limit. Its error is
	// deliver's, after the drain.
	alongside func(ctx context.Context) error
	// limit bounds the measured window of a run with alongside (default
	// the suite's -bench.duration).
	limit time.Duration
}

// deliver registers the endpoints, proves routing works with a probe event,
// publishes open loop at plan.rate, waits for the healthy endpoints to
// receive everything (or the drain timeout), and returns the measurement.
func deliver(ctx context.Context, env *suite.Env, t *suite.Target, plan deliveryPlan) (*suite.Measurement, error) {
	if t.APIKey == "" || t.ServiceToken == "" {
		return nil, errors.New("the system's API key and service token are needed: with -bench.system=running set -bench.api-key and -bench.token")
	}
	rcv, closeReceiver, err := startReceiver(plan.receiverConfig)
	if err != nil {
		return nil, err
	}
	defer closeReceiver()
	run := RunID()
	names := make([]string, plan.endpoints)
	var created []string
	// The run's endpoints are deleted when it ends (before its receiver
	// closes): left active, every event of a later run on the same system
	// would also go to them, at a receiver that is gone.
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range created {
			if err := deleteEndpoint(dctx, t, id); err != nil {
				env.Log.Warn("endpoint of the run not deleted; later runs on this system also deliver to it", "err", err)
			}
		}
	}()
	for i := range names {
		names[i] = endpointName(i)
		ep, err := createEndpoint(ctx, t, rcv.URL(names[i]), "zaits-bench "+run, []string{EventType})
		if err != nil {
			return nil, err
		}
		created = append(created, ep.ID)
		rcv.Register(receiver.Endpoint{Name: names[i], ID: ep.ID, Secrets: []string{ep.Secret}})
	}
	pub := &publisher{target: t, run: run, single: plan.single, client: &fasthttp.Client{
		MaxConnsPerHost: 4, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second, MaxResponseBodySize: 4 << 20, MaxIdemponentCallAttempts: 1,
	}}
	expect := func(seqs []int64, at time.Time) error {
		for _, n := range names {
			for _, s := range seqs {
				if err := rcv.Expect(n, s, at); err != nil {
					return err
				}
			}
		}
		return nil
	}

	procs := env.Processes(ctx, t)
	// Probe: one event must reach every endpoint before the clock starts.
	probeStart := time.Now()
	seqs, err := pub.publish(ctx, []int64{0})
	if err != nil {
		return nil, fmt.Errorf("probe event: %w", err)
	}
	if err := expect(seqs, time.Time{}); err != nil {
		return nil, err
	}
	if !waitFor(ctx, 30*time.Second, func() bool { return rcv.Outstanding() == 0 }) {
		rp := rcv.Report()
		return nil, fmt.Errorf("the probe event did not reach every endpoint within 30s (delivered %d of %d, %d requests, %d signature failures, %d malformed)",
			rp.Delivered, len(names), rp.Requests, rp.SignatureFailures, rp.Malformed)
	}
	env.Log.Info("probe delivered to every endpoint", "endpoints", len(names), "took", time.Since(probeStart).Round(time.Millisecond))
	for i, b := range plan.behave {
		if err := rcv.SetBehaviour(names[i], b); err != nil {
			return nil, err
		}
	}

	// Publish; the receiver's deliveries are sampled every second.
	sc := env.Config
	window := sc.Duration
	if plan.alongside != nil && plan.limit > 0 {
		window = plan.limit
	}
	var next int64 = 1
	var mu sync.Mutex // one publisher, but keep seq handout obviously safe
	started := time.Now()
	measureFrom := started.Add(sc.Warmup)
	tl := newTimeline(rcv, procs, started, sc.Warmup)
	op := func(ctx context.Context, _ int, intended time.Time) (int, error) {
		mu.Lock()
		batch := make([]int64, plan.batch)
		for i := range batch {
			batch[i] = next
			next++
		}
		mu.Unlock()
		accepted, err := pub.publish(ctx, batch)
		at := intended
		if intended.Before(measureFrom) {
			at = time.Time{}
		}
		if e := expect(accepted, at); e != nil {
			return 0, e
		}
		if err != nil {
			return 0, err
		}
		return len(accepted) * len(names), nil
	}
	loadCtx, endLoad := context.WithCancel(ctx)
	defer endLoad()
	alongside := make(chan error, 1)
	if plan.alongside != nil {
		actx, cancel := context.WithDeadline(ctx, measureFrom.Add(window))
		go func() {
			defer cancel()
			select {
			case <-time.After(time.Until(measureFrom)):
				alongside <- plan.alongside(actx)
			case <-actx.Done():
				alongside <- actx.Err()
			}
			endLoad() // the measured window is the time alongside ran
		}()
	} else {
		alongside <- nil
	}
	stats, err := load.Run(loadCtx, load.Plan{
		Name: plan.name, Concurrency: 1, Rate: plan.rate / float64(plan.batch),
		Warmup: sc.Warmup, Duration: window, Progress: env.Progress, Unit: "deliveries offered",
	}, op)
	alongsideErr := <-alongside
	if err != nil {
		tl.stop()
		return nil, err
	}
	measureEnd := measureFrom.Add(stats.Duration)
	healthy := func() bool {
		rp := rcv.Report()
		for i, n := range names {
			if _, failing := plan.behave[i]; !failing && rp.Endpoints[n].Losses > 0 {
				return false
			}
		}
		return plan.done == nil || plan.done(rp, names)
	}
	drainStart := time.Now()
	drained := drainUntil(ctx, plan.drain, 4*plan.drain, rcv.Requests, healthy)
	env.Log.Info("drain", "complete", drained, "took", time.Since(drainStart).Round(time.Millisecond))
	tl.stop()
	rep := rcv.Report()
	path := "HTTP POST /v1/events/batch → router → dispatcher → receiver"
	if plan.single {
		path = "HTTP POST /v1/events → router → dispatcher → receiver"
	}
	m := suite.NewMeasurement(stats, "deliveries", path, &rep)
	m.OfferedPerSecond = stats.UnitsPerSecond()
	m.Timeline = tl.samples
	m.Units = tl.deliveredBetween(measureFrom, measureEnd)
	m.CPU = tl.cpuBetween(measureFrom, measureEnd)
	m.UnitsPerSecond = float64(m.Units) / stats.Duration.Seconds()
	if !drained {
		return m, errors.Join(alongsideErr, fmt.Errorf("%w %s after publishing stopped (no request for %s, or %s in all; counts as of then)", errNotDrained, time.Since(drainStart).Round(time.Second), plan.drain, 4*plan.drain))
	}
	return m, alongsideErr
}

// startReceiver starts a receiver; the function closes it (held and
// hanging requests released, at most 5 s).
func startReceiver(cfg receiver.Config) (*receiver.Receiver, func(), error) {
	rcv := receiver.New(cfg)
	if err := rcv.Start(); err != nil {
		return nil, nil, err
	}
	return rcv, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rcv.Close(sctx)
	}, nil
}

// endpointName is the receiver name of endpoint i of a run.
func endpointName(i int) string { return "e" + strconv.Itoa(i) }

// errNotDrained: the drain timeout passed before every expected delivery
// (and, in the failures scenario, every expected attempt) arrived.
var errNotDrained = errors.New("deliveries still missing")

// drainUntil polls cond every 50 ms until it holds (true), or until
// progress (a counter) has not moved for idle or cap has passed (false).
func drainUntil(ctx context.Context, idle, cap time.Duration, progress func() int64, cond func() bool) bool {
	start := time.Now()
	last, lastMove := progress(), start
	for {
		if cond() {
			return true
		}
		now := time.Now()
		if p := progress(); p != last {
			last, lastMove = p, now
		}
		if now.Sub(lastMove) > idle || now.Sub(start) > cap || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls cond every 50 ms until it holds (true) or timeout passes (false).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publisher posts bench events in batches with the service token.
type publisher struct {
	target *suite.Target
	run    string
	client *fasthttp.Client
	// single posts each event on its own to POST /v1/events (publish is
	// then given one sequence number at a time).
	single bool
	// eventType is the type of the events; default EventType.
	eventType string
}

// publish posts the events with sequence numbers seqs and returns the ones
// the system accepted (all on 202, the accepted items on 207). A single
// publisher posts each to POST /v1/events on its own, in order, and stops
// at the first one not accepted.
func (p *publisher) publish(ctx context.Context, seqs []int64) ([]int64, error) {
	if p.single {
		for i, s := range seqs {
			if err := p.post(ctx, "/v1/events", []int64{s}, nil); err != nil {
				return seqs[:i], err
			}
		}
		return seqs, nil
	}
	var accepted []int64
	err := p.post(ctx, "/v1/events/batch", seqs, &accepted)
	return accepted, err
}

// post sends seqs to path: one event as the body of /v1/events, or
// {"events":[…]} to /v1/events/batch, whose accepted sequence numbers
// (all on 202, the accepted items on 207) go to *accepted.
func (p *publisher) post(ctx context.Context, path string, seqs []int64, accepted *[]int64) error {
	var body []byte
	if accepted != nil {
		body = append(body, `{"events":[`...)
	}
	for i, s := range seqs {
		if i > 0 {
			body = append(body, ',')
		}
		ev := NewEvent("evt_"+p.run+"_"+strconv.FormatInt(s, 10), p.target.Account, s)
		if p.eventType != "" {
			ev.Type = p.eventType
		}
		v, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		body = append(body, v...)
	}
	if accepted != nil {
		body = append(body, "]}"...)
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(p.target.GatewayURL + path)
	req.Header.Set("Authorization", "Bearer "+p.target.ServiceToken)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := p.client.DoTimeout(req, resp, 15*time.Second); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	switch {
	case resp.StatusCode() == fasthttp.StatusAccepted:
		if accepted != nil {
			*accepted = seqs
		}
		return nil
	case resp.StatusCode() == fasthttp.StatusMultiStatus && accepted != nil:
		var env struct {
			Data struct {
				Results []struct {
					Index  int    `json:"index"`
					Status string `json:"status"`
				} `json:"results"`
			} `json:"data"`
		}
		if err := json.Unmarshal(resp.Body(), &env); err != nil {
			return fmt.Errorf("publish: 207 answer: %w", err)
		}
		for _, r := range env.Data.Results {
			if r.Status == "accepted" && r.Index >= 0 && r.Index < len(seqs) {
				*accepted = append(*accepted, seqs[r.Index])
			}
		}
		return fmt.Errorf("publish: %d of %d events rejected: %s", len(seqs)-len(*accepted), len(seqs), clip(resp.Body(), 300))
	}
	return fmt.Errorf("publish: status %d: %s", resp.StatusCode(), clip(resp.Body(), 300))
}

// timeline samples the receiver's delivered count, and the CPU time of
// the run's processes, every second.
type timeline struct {
	rcv     *receiver.Receiver
	procs   suite.Processes
	start   time.Time
	warmup  time.Duration
	samples []load.Sample
	counts  []int64 // delivered at each sample
	cpu     []suite.CPUSample
	times   []time.Time
	done    chan struct{}
	wg      sync.WaitGroup
}

func newTimeline(rcv *receiver.Receiver, procs suite.Processes, start time.Time, warmup time.Duration) *timeline {
	t := &timeline{rcv: rcv, procs: procs, start: start, warmup: warmup, done: make(chan struct{})}
	// The first interval starts when sampling does, which may be after start
	// (a recovery job's line drawn on its live run's time axis).
	t.counts, t.cpu, t.times = []int64{rcv.Delivered()}, []suite.CPUSample{procs.Sample()}, []time.Time{time.Now()}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prevErr int64
		for {
			select {
			case <-t.done:
				return
			case now := <-tick.C:
				d, e := rcv.Delivered(), rcv.Errors()
				cpu := procs.Sample()
				prev := t.counts[len(t.counts)-1]
				e, prevErr = e-prevErr, e
				el := now.Sub(t.times[len(t.times)-1]).Seconds()
				t.samples = append(t.samples, load.Sample{T: now.Sub(start).Seconds(), Rate: float64(d-prev) / el, Errors: e, Warmup: now.Sub(start) <= warmup})
				t.counts, t.cpu, t.times = append(t.counts, d), append(t.cpu, cpu), append(t.times, now)
			}
		}
	}()
	return t
}

func (t *timeline) stop() {
	close(t.done)
	t.wg.Wait()
}

// nearest is the index of the sample nearest to at.
func (t *timeline) nearest(at time.Time) int {
	best, bestD := 0, time.Duration(1<<62)
	for i, ts := range t.times {
		if d := max(ts.Sub(at), at.Sub(ts)); d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// deliveredBetween is the deliveries between the samples nearest to from and to.
func (t *timeline) deliveredBetween(from, to time.Time) int64 {
	return t.counts[t.nearest(to)] - t.counts[t.nearest(from)]
}

// cpuBetween is the processes' CPU between the same samples as
// deliveredBetween, per 1,000 of its deliveries.
func (t *timeline) cpuBetween(from, to time.Time) *suite.CPUReport {
	a, b := t.nearest(from), t.nearest(to)
	return t.procs.Usage(t.cpu[a], t.cpu[b], t.counts[b]-t.counts[a])
}
