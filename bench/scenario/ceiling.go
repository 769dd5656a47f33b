package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/schemas"
)

// CeilingConfig configures the ceiling scenario. RegisterFlags sets the
// documented defaults.
type CeilingConfig struct {
	// Endpoints is the number of receiver endpoints (N). Default 100.
	Endpoints int
	// Concurrency is the number of client workers and connections (C),
	// capped at Endpoints (one endpoint is served by one worker, in order). Default 64.
	Concurrency int
	// Rate is the open-loop target in deliveries/s; 0 means half the
	// closed-loop maximum just measured. Default 0.
	Rate float64
}

// RegisterFlags registers the ceiling.* flags.
func (c *CeilingConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Endpoints, "ceiling.endpoints", 100, "receiver endpoints (N)")
	fs.IntVar(&c.Concurrency, "ceiling.concurrency", 64, "client workers and connections (C), at most N")
	fs.Float64Var(&c.Rate, "ceiling.rate", 0, "open-loop target deliveries/s (0: half the closed-loop maximum)")
}

// Validate reports every problem at once.
func (c *CeilingConfig) Validate() error {
	var errs []error
	if c.Endpoints < 1 || c.Endpoints > 100_000 {
		errs = append(errs, fmt.Errorf("ceiling.endpoints: must be 1..100000, got %d", c.Endpoints))
	}
	if c.Concurrency < 1 || c.Concurrency > 10_000 {
		errs = append(errs, fmt.Errorf("ceiling.concurrency: must be 1..10000, got %d", c.Concurrency))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("ceiling.rate: must not be negative"))
	}
	return errors.Join(errs...)
}

// Ceiling is the physical ceiling of the machine: a bare fasthttp client
// signs and posts the same payloads the dispatcher would straight to the
// bench's receiver, which verifies them exactly as in e2e. It runs closed
// loop (the maximum) and then open loop at a target rate.
func Ceiling(cfg *CeilingConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "ceiling",
		About: "A bare fasthttp client signs and POSTs seed payloads straight to the verifying receiver (no Kafka, no system): the most deliveries/s this machine can verify, which e2e is compared with.",
		Estimate: func(sc *suite.Config) time.Duration {
			return 2*(sc.Warmup+sc.Duration) + 2*time.Second
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			sc := env.Config
			res := &suite.Result{}
			closed, err := ceilingRun(ctx, env, cfg, load.Plan{Name: "closed-loop", Warmup: sc.Warmup, Duration: sc.Duration})
			if err != nil {
				return res, err
			}
			res.Runs = append(res.Runs, closed)
			rate := cfg.Rate
			if rate == 0 {
				rate = closed.UnitsPerSecond / 2
			}
			if rate < 1 {
				return res, fmt.Errorf("closed loop measured %.1f deliveries/s: nothing to run open loop at", closed.UnitsPerSecond)
			}
			open, err := ceilingRun(ctx, env, cfg, load.Plan{Name: "open-loop " + load.Thousands(rate) + "/s", Rate: rate, Warmup: sc.Warmup, Duration: sc.Duration})
			if err != nil {
				return res, err
			}
			res.Runs = append(res.Runs, open)
			res.Headline = []suite.Metric{
				{Name: "ceiling (closed loop)", Value: closed.UnitsPerSecond, Unit: "deliveries/s"},
				{Name: "p99 at " + load.Thousands(rate) + "/s (open loop)", Value: float64(open.Latency.P99) / 1000, Unit: "ms"},
			}
			var faults int64
			for _, m := range res.Runs {
				rp := m.Receiver
				faults += rp.SignatureFailures + rp.Malformed + rp.OrderViolations + rp.Duplicates + rp.Losses + rp.Unexpected
			}
			res.Headline = append(res.Headline, suite.Metric{Name: "receiver faults (must be 0)", Value: float64(faults), Unit: ""})
			if faults != 0 {
				return res, fmt.Errorf("the receiver reported %d faults on the bare client's deliveries: the bench itself is broken", faults)
			}
			res.Notes = append(res.Notes,
				fmt.Sprintf("%d endpoints, %d workers; each endpoint is served by one worker, so its deliveries are sent in order.", cfg.Endpoints, min(cfg.Concurrency, cfg.Endpoints)),
				"Request latency is client-observed; accepted→receipt is from when the request was due (closed loop: its start) to the receiver's arrival time.",
				"Client and receiver share the machine's cores: the ceiling is of the pair, as in e2e, where the dispatcher and the receiver share them too.")
			return res, nil
		},
	}
}

// ceilingWorker is one client worker's state.
type ceilingWorker struct {
	endpoints []int   // indexes this worker owns
	next      int     // round-robin cursor into endpoints
	seq       []int64 // next sequence per owned endpoint
	req       *fasthttp.Request
	resp      *fasthttp.Response
	id, body  []byte
}

func ceilingRun(ctx context.Context, env *suite.Env, cfg *CeilingConfig, plan load.Plan) (*suite.Measurement, error) {
	rcv := receiver.New(receiver.Config{})
	if err := rcv.Start(); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rcv.Close(sctx)
	}()
	type ep struct{ name, id, secret, url string }
	eps := make([]ep, cfg.Endpoints)
	for i := range eps {
		name := "ce" + strconv.Itoa(i)
		eps[i] = ep{name: name, id: "we_bench_" + name, secret: NewSecret(), url: rcv.URL(name)}
		rcv.Register(receiver.Endpoint{Name: name, ID: eps[i].id, Secrets: []string{eps[i].secret}})
	}
	conc := min(cfg.Concurrency, cfg.Endpoints)
	client := &fasthttp.HostClient{
		Addr: rcv.Addr(), MaxConns: conc, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxResponseBodySize: 64 << 10, MaxIdemponentCallAttempts: 1,
	}
	workers := make([]*ceilingWorker, conc)
	for w := range workers {
		cw := &ceilingWorker{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
		for e := w; e < cfg.Endpoints; e += conc {
			cw.endpoints = append(cw.endpoints, e)
		}
		cw.seq = make([]int64, len(cw.endpoints))
		workers[w] = cw
	}
	defer func() {
		for _, cw := range workers {
			fasthttp.ReleaseRequest(cw.req)
			fasthttp.ReleaseResponse(cw.resp)
		}
	}()
	run := RunID()
	op := func(ctx context.Context, w int, intended time.Time) (int, error) {
		cw := workers[w]
		i := cw.next
		cw.next = (cw.next + 1) % len(cw.endpoints)
		e := eps[cw.endpoints[i]]
		seq := cw.seq[i]
		cw.seq[i]++
		now := time.Now()
		cw.id = AppendEventID(cw.id[:0], run, cw.endpoints[i], seq)
		cw.body = AppendPayload(cw.body[:0], string(cw.id), now.Unix(), seq)
		if err := rcv.Expect(e.name, seq, intended); err != nil {
			return 0, err
		}
		req, resp := cw.req, cw.resp
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(e.url)
		req.SetBodyRaw(cw.body)
		receiver.Sign(&req.Header, e.secret, schemas.DeliveryID(string(cw.id), e.id), EventType, now.Unix(), cw.body)
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			return 0, fmt.Errorf("POST %s: %w", e.url, err)
		}
		if resp.StatusCode() != fasthttp.StatusOK {
			return 0, fmt.Errorf("POST %s: status %d: %s", e.url, resp.StatusCode(), clip(resp.Body(), 200))
		}
		return 1, nil
	}
	plan.Concurrency, plan.Unit, plan.Progress = conc, "deliveries", env.Progress
	plan.Name = "ceiling " + plan.Name
	// CPU is sampled when the warm-up ends and when the run returns, the
	// measured window's ends (no system here: zaits is absent).
	procs := env.Processes(ctx, nil)
	measureFrom := make(chan suite.CPUSample, 1)
	warm := time.AfterFunc(plan.Warmup, func() { measureFrom <- procs.Sample() })
	defer warm.Stop()
	stats, err := load.Run(ctx, plan, op)
	if err != nil {
		return nil, err
	}
	end := procs.Sample()
	stats.Name = plan.Name[len("ceiling "):]
	rep := rcv.Report()
	rep.Endpoints = nil // N endpoints of identical counters would only bloat results.json
	m := suite.NewMeasurement(stats, "deliveries", "bare fasthttp client → receiver", &rep)
	select {
	case from := <-measureFrom:
		m.CPU = procs.Usage(from, end, stats.Units)
	default: // stopped within the warm-up
	}
	return m, nil
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
