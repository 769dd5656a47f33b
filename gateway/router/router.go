// Package router is the router: the consumer group over <p>.events that
// turns every event into one delivery task per subscribed, active endpoint
// of its account, on <p>.deliveries (keyed by endpoint id). It runs as
// `zaits router`, and inside `zaits gateway` and `zaits all` by default.
//
// Each assigned partition of <p>.events is handled by one goroutine, in
// offset order: fetch a batch, build the tasks of every event (quarantining
// invalid messages, dropping duplicates), write them all with acks=all,
// then mark the batch finished. A committer commits the finished offsets
// every Config.CommitInterval and when the generation ends, so an offset is
// committed only after every task of the events before it was acknowledged.
// One account's events share a partition, and its writes are made in
// order, so each endpoint's task stream keeps the account's order.
//
// Causal routing: after a batch is fetched, the end offsets of
// <p>.endpoints are read, and the batch is routed only once the router's
// endpoint view has applied every record before them (at most
// Config.EndpointsWait after the fetch; then it is routed as the view is,
// counted and logged). An endpoint change answered before an event was
// accepted lies before those offsets, so it applies to the event.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/eventlog"
	"github.com/zaits/webhooks/internal/jobs"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/schemas"
)

// Router fans events out to delivery tasks.
type Router struct {
	cfg    Config
	log    *slog.Logger
	ops    *ops.Server
	store  *endpoint.Store
	evlog  *eventlog.Log // <p>.events
	client *kafka.Client
	// producer writes each routed batch (tasks, quarantined events) in one
	// request per partition leader; a batch is written as soon as it is
	// routed (no linger).
	producer *broker.Producer
	m        *metrics

	// Recovery jobs (jobs.go) and the failing-endpoint check (health.go).
	jobs     *jobs.Store
	jobLimit *rate.Limiter // all jobs of this router together
	history  *analytics.History
	closeCH  func() error

	events, deliveries, invalid string

	joined  atomic.Bool
	started atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	aborted atomic.Bool
}

// New builds a router; nothing is started until Start.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Router, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	epCfg := *cfg.Endpoints
	epCfg.Dev = epCfg.Dev || cfg.Dev
	store, err := endpoint.NewStore(epCfg, cfg.Kafka, log.With("part", "endpoints"), reg)
	if err != nil {
		return nil, err
	}
	kc := cfg.Kafka
	r := &Router{
		cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log), store: store, evlog: eventlog.New(kc), client: kc.Client(), producer: kc.NewProducer(), m: newMetrics(reg),
		events:     kc.Topic(schemas.TopicEvents),
		deliveries: kc.Topic(schemas.TopicDeliveries),
		invalid:    kc.Topic(schemas.TopicEventsInvalid),
		jobs:       jobs.NewStore(kc, log.With("part", "jobs")),
		jobLimit:   rate.NewLimiter(rate.Limit(cfg.JobsMaxRate), min(cfg.JobsMaxRate, jobBatch)),
	}
	if h := cfg.History; h != nil {
		conn, err := analytics.Open(*h, h.ClickHouseDatabase)
		if err != nil {
			return nil, fmt.Errorf("router: delivery log: %w", err)
		}
		if r.history, err = analytics.NewHistory(conn, h.ClickHouseDatabase, reg); err != nil {
			return nil, errors.Join(fmt.Errorf("router: delivery log: %w", err), conn.Close())
		}
		r.closeCH = conn.Close
	}
	r.ops.AddCheck("kafka", func(ctx context.Context) error { return kc.Ping(ctx, r.events) })
	r.ops.AddCheck("endpoints", func(context.Context) error {
		if !r.started.Load() {
			return errors.New("endpoint store not caught up yet")
		}
		return nil
	})
	r.ops.AddCheck("consumer", func(context.Context) error {
		if !r.joined.Load() {
			return fmt.Errorf("not a member of consumer group %s yet", cfg.Group)
		}
		return nil
	})
	return r, nil
}

// Start serves the ops endpoints, provisions the topics, catches the
// endpoint store up (so routing sees every endpoint) and runs the router in
// the background until Stop.
func (r *Router) Start(ctx context.Context) error {
	if err := r.ops.Start(); err != nil {
		return err
	}
	if err := broker.WaitAndEnsureTopics(ctx, r.cfg.Kafka, r.log); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := r.store.Start(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := r.jobs.Start(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	r.started.Store(true)
	rctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.run(rctx)
	r.log.Info("router running", "ops", r.ops.Addr(), "group", r.cfg.Group, "brokers", r.cfg.Kafka.Brokers)
	return nil
}

// OpsAddr is the bound ops address.
func (r *Router) OpsAddr() string { return r.ops.Addr() }

// Stop finishes the batches in progress, commits their offsets, leaves the
// group, closes the producer's connections and stops the endpoint store and the ops server.
func (r *Router) Stop(ctx context.Context) error {
	var errs []error
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("router stop: %w", ctx.Err()))
		}
	}
	r.producer.Close()
	if r.started.Load() {
		errs = append(errs, r.store.Stop(), r.jobs.Stop())
	}
	if r.closeCH != nil {
		errs = append(errs, r.closeCH())
	}
	errs = append(errs, r.ops.Stop(ctx))
	return errors.Join(errs...)
}

// abort stops the router the way a crash does: no further commit, so the
// events after the last committed offset are routed again by the next owner.
func (r *Router) abort() {
	r.aborted.Store(true)
	r.cancel()
	<-r.done
	r.producer.Close()
	r.store.Stop()
	r.jobs.Stop()
	r.ops.Stop(context.Background())
}

func (r *Router) run(ctx context.Context) {
	defer close(r.done)
	cg, err := r.cfg.Kafka.NewGroup(kafka.ConsumerGroupConfig{
		ID:                r.cfg.Group,
		Topics:            []string{r.events},
		Dialer:            &kafka.Dialer{Timeout: r.cfg.Kafka.DialTimeout, ClientID: "zaits-router"},
		SessionTimeout:    r.cfg.SessionTimeout,
		HeartbeatInterval: r.cfg.SessionTimeout / 4,
		RebalanceTimeout:  r.cfg.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		ErrorLogger:       kafka.LoggerFunc(func(msg string, args ...any) { r.log.Debug("router group: " + fmt.Sprintf(msg, args...)) }),
	}, r.log)
	if err != nil { // only a configuration error
		r.log.Error("router cannot start", "err", err)
		return
	}
	defer cg.Close() // leaves the group after the last generation ended
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// "Group Coordinator Not Available" on a fresh broker, rebalances,
			// a broker restart: the group retries with backoff by itself.
			r.joined.Store(false)
			r.log.Warn("router: joining the consumer group", "group", r.cfg.Group, "err", err)
			continue
		}
		r.joined.Store(true)
		r.generation(ctx, gen)
	}
}

// progress holds the next offset to commit per partition of one generation.
type progress struct {
	mu   sync.Mutex
	next map[int]int64
}

func (p *progress) set(partition int, offset int64) {
	p.mu.Lock()
	p.next[partition] = offset
	p.mu.Unlock()
}

func (p *progress) snapshot() map[int]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]int64, len(p.next))
	for k, v := range p.next {
		out[k] = v
	}
	return out
}

// generation starts one goroutine per assigned partition and the committer.
func (r *Router) generation(ctx context.Context, gen *kafka.Generation) {
	assigned := gen.Assignments[r.events]
	r.log.Info("router assigned partitions", "group", r.cfg.Group, "generation", gen.ID, "partitions", len(assigned))
	prog := &progress{next: map[int]int64{}}
	var wg sync.WaitGroup
	for _, a := range assigned {
		wg.Add(1)
		gen.Start(func(gctx context.Context) {
			defer wg.Done()
			pctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(gctx, cancel)
			defer stop()
			r.partition(pctx, a, prog)
		})
		// The account's jobs run where its live events are routed.
		gen.Start(func(gctx context.Context) { r.runJobs(gctx, a.ID) })
		if a.ID == 0 && r.history != nil && r.cfg.DisableAfter > 0 {
			gen.Start(func(gctx context.Context) { r.watchHealth(gctx) })
		}
	}
	gen.Start(func(gctx context.Context) {
		t := time.NewTicker(r.cfg.CommitInterval)
		defer t.Stop()
		committed := map[int]int64{}
		for {
			select {
			case <-t.C:
				if !r.aborted.Load() {
					r.commit(gen, prog, committed)
				}
				r.measureLag(gctx, prog)
			case <-gctx.Done():
				wg.Wait() // every partition goroutine finished its batch
				for _, a := range assigned {
					r.m.lag.DeleteLabelValues(strconv.Itoa(a.ID))
				}
				if !r.aborted.Load() {
					r.commit(gen, prog, committed)
				}
				return
			}
		}
	})
}

// commit commits the offsets that moved since the last commit.
func (r *Router) commit(gen *kafka.Generation, prog *progress, committed map[int]int64) {
	offs := prog.snapshot()
	for p, o := range offs {
		if committed[p] == o {
			delete(offs, p)
		}
	}
	if len(offs) == 0 {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{r.events: offs}); err != nil {
		r.m.commitErrs.Inc()
		r.log.Warn("router: committing offsets (retried at the next interval)", "err", err)
		return
	}
	for p, o := range offs {
		committed[p] = o
	}
}

// measureLag sets the lag of each partition in prog: the high-water mark
// now minus the next offset to route. It is measured apart from the
// partition goroutines so that a stuck one shows a growing lag.
func (r *Router) measureLag(ctx context.Context, prog *progress) {
	next := prog.snapshot()
	if len(next) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CommitInterval)
	defer cancel()
	_, hwm, err := broker.Offsets(ctx, r.client, r.events)
	if err != nil {
		return
	}
	for p, o := range next {
		r.m.lag.WithLabelValues(strconv.Itoa(p)).Set(float64(max(hwm[p]-o, 0)))
	}
}
