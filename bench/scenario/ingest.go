package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// Ingest paths.
const (
	PathKafka      = "kafka"       // produce straight to <p>.events
	PathHTTPSingle = "http-single" // POST /v1/events
	PathHTTPBatch  = "http-batch"  // POST /v1/events/batch
)

// IngestConfig configures the ingest scenario. RegisterFlags sets the
// documented defaults; Kafka is the shared kafka.* configuration.
type IngestConfig struct {
	Kafka *broker.Config
	// Paths is the comma-separated list of paths to drive. Default "kafka,http-single,http-batch".
	Paths string
	// Concurrency is the closed-loop workers (requests or produce calls in flight). Default 32.
	Concurrency int
	// OpenConcurrency is the open-loop workers: enough that a slow request
	// does not hold back the schedule of the others. Default 128.
	OpenConcurrency int
	// BatchSize is the events per batch request and per Kafka produce call. Default 100.
	BatchSize int
	// SingleRate, BatchRate and KafkaRate are the open-loop targets in
	// events/s; 0 means half the closed-loop maximum just measured on that
	// path. Default 0.
	SingleRate, BatchRate, KafkaRate float64
	// KafkaTopicPrefix is the prefix the kafka path produces to. Default ""
	// means a private prefix whose topics are created for the run and deleted
	// afterwards (Kafka alone is measured and no running system is fed); set
	// it to the system's prefix ("zaits") to feed the router too.
	KafkaTopicPrefix string
}

// RegisterFlags registers the ingest.* flags.
func (c *IngestConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Paths, "ingest.paths", "kafka,http-single,http-batch", "comma-separated ingest paths: kafka, http-single, http-batch")
	fs.IntVar(&c.Concurrency, "ingest.concurrency", 32, "closed-loop workers")
	fs.IntVar(&c.OpenConcurrency, "ingest.open-concurrency", 128, "open-loop workers")
	fs.IntVar(&c.BatchSize, "ingest.batch-size", 100, "events per batch request and per Kafka produce call (1..1000)")
	fs.Float64Var(&c.SingleRate, "ingest.single-rate", 0, "open-loop target of http-single, events/s (0: half the closed-loop maximum)")
	fs.Float64Var(&c.BatchRate, "ingest.batch-rate", 0, "open-loop target of http-batch, events/s (0: half the closed-loop maximum)")
	fs.Float64Var(&c.KafkaRate, "ingest.kafka-rate", 0, "open-loop target of the kafka path, events/s (0: half the closed-loop maximum)")
	fs.StringVar(&c.KafkaTopicPrefix, "ingest.kafka-topic-prefix", "", "topic prefix the kafka path produces to; empty: a private prefix created and deleted by the run")
}

// PathList is Paths split at commas.
func (c *IngestConfig) PathList() []string {
	var out []string
	for _, p := range strings.Split(c.Paths, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports every problem at once.
func (c *IngestConfig) Validate() error {
	var errs []error
	for _, p := range c.PathList() {
		if !slices.Contains([]string{PathKafka, PathHTTPSingle, PathHTTPBatch}, p) {
			errs = append(errs, fmt.Errorf("ingest.paths: unknown path %q (kafka, http-single, http-batch)", p))
		}
	}
	if len(c.PathList()) == 0 {
		errs = append(errs, errors.New("ingest.paths: at least one path is required"))
	}
	if c.Concurrency < 1 || c.OpenConcurrency < 1 {
		errs = append(errs, errors.New("ingest.concurrency and ingest.open-concurrency: must be at least 1"))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("ingest.batch-size: must be 1..1000, got %d", c.BatchSize))
	}
	if c.SingleRate < 0 || c.BatchRate < 0 || c.KafkaRate < 0 {
		errs = append(errs, errors.New("ingest.single-rate, ingest.batch-rate, ingest.kafka-rate: must not be negative"))
	}
	return errors.Join(errs...)
}

// Ingest measures accepted events/s and request latency on every ingest
// path, closed loop and open loop. A path whose server is missing (the
// gateway not running, ingestion not deployed, token rejected) is reported
// as skipped with the reason; the others still run.
func Ingest(cfg *IngestConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "ingest",
		About: "Producers publish events over HTTP (single and batched, Bearer token) and straight to Kafka (<p>.events, key = account id); accepted events/s and request latency, closed loop and open loop.",
		Estimate: func(sc *suite.Config) time.Duration {
			return time.Duration(len(cfg.PathList())) * (2*(sc.Warmup+sc.Duration) + 5*time.Second)
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			res := &suite.Result{}
			var ran int
			var target *suite.Target
			var targetErr error
			if slices.ContainsFunc(cfg.PathList(), func(p string) bool { return p != PathKafka }) {
				var stop func()
				if target, stop, targetErr = env.System(ctx); targetErr == nil {
					defer stop()
					if target.Started {
						res.Notes = append(res.Notes, "HTTP paths measured on a private zaits started for this scenario: `zaits "+strings.Join(target.Args, " ")+"`")
					}
				}
			}
			for _, p := range cfg.PathList() {
				var runs []*suite.Measurement
				var skip string
				var err error
				switch p {
				case PathKafka:
					runs, err = ingestKafka(ctx, env, cfg)
				case PathHTTPSingle, PathHTTPBatch:
					if targetErr != nil {
						skip = "could not start the system: " + targetErr.Error()
						break
					}
					runs, skip, err = ingestHTTP(ctx, env, cfg, target, p == PathHTTPBatch)
				}
				if err != nil {
					return res, fmt.Errorf("%s: %w", p, err)
				}
				if skip != "" {
					res.Notes = append(res.Notes, fmt.Sprintf("**%s skipped:** %s", p, skip))
					env.Log.Warn("ingest path skipped", "path", p, "reason", skip)
					continue
				}
				ran++
				res.Runs = append(res.Runs, runs...)
				closed, open := runs[0], runs[1]
				res.Headline = append(res.Headline,
					suite.Metric{Name: p + " accepted (closed loop)", Value: closed.UnitsPerSecond, Unit: "events/s"},
					suite.Metric{Name: p + " p99 at " + load.Thousands(open.TargetRate*float64(batchOf(cfg, p))) + " events/s (open loop)", Value: float64(open.Latency.P99) / 1000, Unit: "ms"})
			}
			if ran == 0 {
				res.Status, res.Reason = "skipped", "no ingest path could run (see notes)"
			}
			res.Notes = append(res.Notes, fmt.Sprintf("Closed loop: %d workers; open loop: %d workers; Kafka produce calls and batch requests carry %d events each.", cfg.Concurrency, cfg.OpenConcurrency, cfg.BatchSize))
			return res, nil
		},
	}
}

func batchOf(cfg *IngestConfig, path string) int {
	if path == PathHTTPSingle {
		return 1
	}
	return cfg.BatchSize
}

// ingestKafka produces to <prefix>.events with acks=all through the
// project's writer settings (broker.NewWriter), closed then open loop.
func ingestKafka(ctx context.Context, env *suite.Env, cfg *IngestConfig) ([]*suite.Measurement, error) {
	kc := *cfg.Kafka
	kc.Partitions = broker.DefaultPartitions()
	for k, v := range cfg.Kafka.Partitions {
		kc.Partitions[k] = v
	}
	if cfg.KafkaTopicPrefix != "" {
		kc.TopicPrefix = cfg.KafkaTopicPrefix
	} else {
		kc.TopicPrefix = "bench-" + broker.RandomSuffix(8)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := broker.EnsureTopics(cctx, &kc)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create private topics %s.*: %w", kc.TopicPrefix, err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := broker.DeleteTopics(dctx, &kc); err != nil {
				env.Log.Warn("deleting the private bench topics", "prefix", kc.TopicPrefix, "err", err)
			}
		}()
	}
	topic := kc.Topic(schemas.TopicEvents)
	w := kc.NewWriter(topic, 2*time.Millisecond)
	defer w.Close()
	account := env.Config.Account
	run := RunID()
	var seq atomicSeq
	newOp := func(workers int) load.Op {
		batches := make([][]kafka.Message, workers)
		return func(ctx context.Context, worker int, _ time.Time) (int, error) {
			msgs := batches[worker][:0]
			for range cfg.BatchSize {
				n := seq.next()
				ev := NewEvent("evt_"+run+"_"+strconv.FormatInt(n, 10), account, n)
				v, err := json.Marshal(ev)
				if err != nil {
					return 0, err
				}
				msgs = append(msgs, kafka.Message{Key: []byte(account), Value: v})
			}
			batches[worker] = msgs
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return 0, err
			}
			return len(msgs), nil
		}
	}
	path := "Kafka produce → " + topic + " (acks=all)"
	return closedAndOpen(ctx, env, cfg, "kafka", path, cfg.KafkaRate, cfg.BatchSize, newOp)
}

// closedAndOpen runs newOp (size events per operation) closed loop, then
// open loop at eventRate events/s (0: half the closed-loop maximum).
func closedAndOpen(ctx context.Context, env *suite.Env, cfg *IngestConfig, label, path string, eventRate float64, size int, newOp func(workers int) load.Op) ([]*suite.Measurement, error) {
	sc := env.Config
	run := func(plan load.Plan) (*suite.Measurement, error) {
		plan.Warmup, plan.Duration, plan.Progress, plan.Unit = sc.Warmup, sc.Duration, env.Progress, "events"
		st, err := load.Run(ctx, plan, newOp(plan.Concurrency))
		if err != nil {
			return nil, err
		}
		return suite.NewMeasurement(st, "events", path, nil), nil
	}
	closed, err := run(load.Plan{Name: label + " closed-loop", Concurrency: cfg.Concurrency})
	if err != nil {
		return nil, err
	}
	if eventRate == 0 {
		eventRate = closed.UnitsPerSecond / 2
	}
	if eventRate < 1 {
		return []*suite.Measurement{closed}, fmt.Errorf("closed loop accepted %.1f events/s (%s): nothing to run open loop at", closed.UnitsPerSecond, closed.FirstError)
	}
	open, err := run(load.Plan{Name: label + " open-loop " + load.Thousands(eventRate) + " events/s", Concurrency: cfg.OpenConcurrency, Rate: eventRate / float64(size)})
	if err != nil {
		return []*suite.Measurement{closed}, err
	}
	return []*suite.Measurement{closed, open}, nil
}

// ingestHTTP drives POST /v1/events (or /v1/events/batch). It first sends
// one request and returns a skip reason when the gateway cannot take it.
func ingestHTTP(ctx context.Context, env *suite.Env, cfg *IngestConfig, sys *suite.Target, batch bool) ([]*suite.Measurement, string, error) {
	base, err := url.Parse(sys.GatewayURL)
	if err != nil {
		return nil, "", err
	}
	target := strings.TrimSuffix(sys.GatewayURL, "/") + "/v1/events"
	size, rate, label := 1, cfg.SingleRate, PathHTTPSingle
	if batch {
		target += "/batch"
		size, rate, label = cfg.BatchSize, cfg.BatchRate, PathHTTPBatch
	}
	client := &fasthttp.Client{
		MaxConnsPerHost: max(cfg.Concurrency, cfg.OpenConcurrency), ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxResponseBodySize: 4 << 20, MaxIdemponentCallAttempts: 1,
	}
	defer client.CloseIdleConnections()
	account, token, run := sys.Account, sys.ServiceToken, RunID()
	var seq atomicSeq
	post := func(req *fasthttp.Request, resp *fasthttp.Response, body []byte) (int, error) {
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(target)
		req.Header.SetContentType("application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.SetBodyRaw(body)
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			return 0, fmt.Errorf("POST %s: %w", target, err)
		}
		switch resp.StatusCode() {
		case fasthttp.StatusAccepted:
			return size, nil
		case fasthttp.StatusMultiStatus:
			return acceptedItems(resp.Body()), nil
		}
		return 0, &statusError{status: resp.StatusCode(), body: clip(resp.Body(), 300)}
	}
	encode := func(b []byte) ([]byte, error) {
		b = b[:0]
		if batch {
			b = append(b, `{"events":[`...)
		}
		for i := range size {
			if i > 0 {
				b = append(b, ',')
			}
			n := seq.next()
			v, err := json.Marshal(NewEvent("evt_"+run+"_"+strconv.FormatInt(n, 10), account, n))
			if err != nil {
				return b, err
			}
			b = append(b, v...)
		}
		if batch {
			b = append(b, "]}"...)
		}
		return b, nil
	}

	// Preflight: one request says whether the gateway can take events at all.
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	body, err := encode(nil)
	if err != nil {
		return nil, "", err
	}
	_, perr := post(req, resp, body)
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	var se *statusError
	switch {
	case perr == nil:
	case errors.As(perr, &se) && (se.status == 404 || se.status == 405):
		return nil, fmt.Sprintf("the gateway at %s answers %d for POST %s: event ingestion is not deployed there (%s)", base.Host, se.status, target, se.body), nil
	case errors.As(perr, &se) && (se.status == 401 || se.status == 403):
		return nil, fmt.Sprintf("the gateway rejected the token (%d %s): with -bench.system=running set -bench.token / ZAITS_BENCH_TOKEN to a service token of that system (account %q)", se.status, se.body, account), nil
	case errors.As(perr, &se):
		return nil, fmt.Sprintf("the first request got %d instead of 202: %s", se.status, se.body), nil
	default:
		return nil, fmt.Sprintf("the gateway is unreachable at %s (%v): start the system with `make run` or point -bench.gateway-url at it", sys.GatewayURL, perr), nil
	}

	newOp := func(workers int) load.Op {
		type state struct {
			req  *fasthttp.Request
			resp *fasthttp.Response
			body []byte
		}
		states := make([]*state, workers)
		for i := range states {
			states[i] = &state{req: &fasthttp.Request{}, resp: &fasthttp.Response{}}
		}
		return func(ctx context.Context, w int, _ time.Time) (int, error) {
			s := states[w]
			var err error
			if s.body, err = encode(s.body); err != nil {
				return 0, err
			}
			return post(s.req, s.resp, s.body)
		}
	}
	path := "HTTP POST " + strings.TrimPrefix(target, sys.GatewayURL)
	runs, err := closedAndOpen(ctx, env, cfg, label, path, rate, size, newOp)
	return runs, "", err
}

// statusError is a response other than 202.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

// acceptedItems counts the accepted events of a 207 answer to a batch:
// {"data":{"accepted":n,"rejected":m,"results":[...]}}.
func acceptedItems(body []byte) int {
	var env struct {
		Data struct {
			Accepted int `json:"accepted"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil {
		return 0
	}
	return env.Data.Accepted
}
