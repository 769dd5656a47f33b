// Package dispatcher turns delivery tasks into signed HTTP POSTs to the
// customers' endpoints: per-endpoint lanes, delay-topic retries, attempt records.
//
// A consumer group (Config.Group) reads <p>.deliveries and the delay topics
// <p>.retry.*; each assigned partition has its own goroutine and, within it,
// one lane per endpoint: one attempt in flight per endpoint, in offset order,
// different endpoints concurrently up to Config.Concurrency, at most
// Config.PartitionBuffer unfinished tasks in memory per partition and
// Config.LaneBuffer per lane: a lane's later tasks are skipped by the
// partition's reader and read again from Kafka by the lane once it has
// worked through the ones it holds, so a slow endpoint never stops its
// partition's reader. A partition's committed offset is its lowest
// unfinished one (a lane's first skipped task counts): a task is finished when it
// got a 2xx, or was handed to its next delay topic or to <p>.dead, and its
// attempt record was acknowledged. Each commit carries a resume record of
// which tasks above the committed offset are unfinished (resume.go), so the
// next owner of a partition does not deliver the finished ones again while
// one endpoint lags. A failed attempt n < 5 goes to the delay
// topic for its wait (Config.RetrySchedule, or a longer Retry-After on 429 and
// 503, capped) with attempt n+1 and its due time; a delay topic's partition
// waits until its head is due. The 5th failure goes to <p>.dead.
//
// The endpoint is read from the store at every attempt: when it is deleted
// (or now belongs to another account) or inactive, the task is not sent,
// and its attempt record says so with error code endpoint_deleted or
// endpoint_inactive and outcome failed (no further attempt). An endpoint
// with "ordering": "strict" keeps a failing task in its lane and retries it
// there on the same schedule, so its later tasks wait behind it; only that
// lane waits.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/schemas"
)

// Dispatcher delivers tasks from <p>.deliveries and the retry topics.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	ops    *ops.Server
	m      *metrics
	client *Client
	store  *endpoint.Store
	kafka  *kafka.Client // offset commits and fetches with resume records (resume.go)
	// stuck is the view's position when a wait for a task's position last
	// ran out (deliver.go): while the view has not moved from it, attempts
	// do not wait again. Nil when no wait has run out since the view moved.
	stuck atomic.Pointer[endpoint.Position]

	sem       chan struct{}   // global bound on attempts in flight
	limits    *limiters       // per-endpoint rate limits (ratelimit.go)
	handoffs  *feed           // to the delay topics and <p>.dead
	attempts  *feed           // to <p>.attempts
	fetcher   *broker.Fetcher // reads the assigned partitions (a lane's refill has its own reader)
	group     *broker.Group
	runCtx    context.Context // ends when Stop returns
	runCancel context.CancelFunc
	hardStop  context.Context // ends when Stop's deadline passes: abandon in-flight work
	hardDone  context.CancelFunc
	started   atomic.Bool
	joined    atomic.Bool
	wg        sync.WaitGroup
	stopOnce  sync.Once
	stopErr   error
}

// New builds a dispatcher; nothing is started until Start.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	dcfg := *cfg.Delivery
	dcfg.Dev = dcfg.Dev || cfg.Dev
	client, err := NewClient(dcfg, reg)
	if err != nil {
		return nil, err
	}
	epCfg := *cfg.Endpoints
	epCfg.Dev = epCfg.Dev || cfg.Dev
	store, err := endpoint.NewStore(epCfg, cfg.Kafka, log.With("part", "endpoints"), reg)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log), m: m, client: client, store: store,
		kafka: cfg.Kafka.Client(), sem: make(chan struct{}, cfg.Concurrency), limits: newLimiters()}
	d.runCtx, d.runCancel = context.WithCancel(context.Background())
	d.hardStop, d.hardDone = context.WithCancel(context.Background())
	d.handoffs = d.newFeed()
	d.attempts = d.newFeed()
	d.fetcher = cfg.Kafka.NewFetcher(log, 250*time.Millisecond, 256)
	topic := cfg.Kafka.Topic(schemas.TopicDeliveries)
	d.ops.AddCheck("kafka", func(ctx context.Context) error { return cfg.Kafka.Ping(ctx, topic) })
	d.ops.AddCheck("endpoints", func(context.Context) error {
		if !d.started.Load() {
			return errors.New("endpoint store not caught up yet")
		}
		return nil
	})
	d.ops.AddCheck("consumer", func(context.Context) error {
		if !d.joined.Load() {
			return fmt.Errorf("not a member of consumer group %s yet", cfg.Group)
		}
		return nil
	})
	return d, nil
}

// consumedTopics are <p>.deliveries and the delay topics, as full names.
func (d *Dispatcher) consumedTopics() []string {
	out := []string{d.cfg.Kafka.Topic(schemas.TopicDeliveries)}
	for _, t := range schemas.RetryTopics {
		out = append(out, d.cfg.Kafka.Topic(t))
	}
	return out
}

// Start provisions the topics, catches the endpoint store up, joins the
// consumer group and serves the ops endpoints.
func (d *Dispatcher) Start(ctx context.Context) error {
	if err := d.ops.Start(); err != nil {
		return err
	}
	d.client.AddListener(d.ops.Addr()) // never delivered to, even where loopback is allowed
	if err := broker.WaitAndEnsureTopics(ctx, d.cfg.Kafka, d.log); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	if err := d.store.Start(ctx); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	d.started.Store(true)
	group, err := d.cfg.Kafka.NewGroup(kafka.ConsumerGroupConfig{
		ID:                d.cfg.Group,
		Dialer:            &kafka.Dialer{Timeout: d.cfg.Kafka.DialTimeout},
		Topics:            d.consumedTopics(),
		HeartbeatInterval: min(time.Second, d.cfg.SessionTimeout/6),
		SessionTimeout:    d.cfg.SessionTimeout,
		RebalanceTimeout:  d.client.cfg.Timeout + 10*time.Second,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		Timeout:           10 * time.Second,
	}, d.log)
	if err != nil {
		return fmt.Errorf("dispatcher: consumer group %s: %w", d.cfg.Group, err)
	}
	d.group = group
	d.wg.Add(2)
	go d.consume()
	go d.watchLag()
	d.log.Info("dispatcher running", "ops", d.ops.Addr(), "group", d.cfg.Group, "retry_schedule", d.cfg.RetrySchedule.String())
	return nil
}

// consume runs one generation after another until the group closes.
func (d *Dispatcher) consume() {
	defer d.wg.Done()
	for {
		gen, err := d.group.Next(d.runCtx)
		if err != nil {
			if errors.Is(err, kafka.ErrGroupClosed) || d.runCtx.Err() != nil {
				return
			}
			d.joined.Store(false)
			d.log.Warn("consumer group", "err", err)
			continue
		}
		d.joined.Store(true)
		var parts []*partition
		commitMu := &sync.Mutex{}
		tiers := map[string]int{d.cfg.Kafka.Topic(schemas.TopicDeliveries): -1}
		for i, t := range schemas.RetryTopics {
			tiers[d.cfg.Kafka.Topic(t)] = i
		}
		fctx, cancel := context.WithTimeout(d.runCtx, 10*time.Second)
		resumes := d.fetchResume(fctx, gen)
		cancel()
		n := 0
		for topic, assigned := range gen.Assignments {
			for _, a := range assigned {
				p := newPartition(d, topic, a.ID, tiers[topic], a.Offset, commitMu)
				p.resume = resumes[topic][a.ID]
				parts = append(parts, p)
				offset := a.Offset
				gen.Start(func(ctx context.Context) { p.run(ctx, gen, offset) })
				n++
			}
		}
		d.log.Info("partitions assigned", "generation", gen.ID, "partitions", n)
		gen.Start(func(ctx context.Context) { d.commitLoop(ctx, gen, parts, commitMu) })
	}
}

// OpsAddr is the bound ops address.
func (d *Dispatcher) OpsAddr() string { return d.ops.Addr() }

// Stop stops reading, lets the attempts in flight finish (abandoning them,
// uncommitted, if ctx ends first), commits every partition's lowest
// unfinished offset, leaves the group and stops the endpoint store.
// Calling it again returns the first call's result.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() { d.stopErr = d.stop(ctx) })
	return d.stopErr
}

func (d *Dispatcher) stop(ctx context.Context) error {
	stopHard := context.AfterFunc(ctx, d.hardDone)
	defer stopHard()
	var errs []error
	if d.group != nil {
		if err := d.group.Close(); err != nil {
			errs = append(errs, fmt.Errorf("consumer group: %w", err))
		}
	}
	if err := d.handoffs.stop(); err != nil {
		errs = append(errs, err)
	}
	if err := d.attempts.stop(); err != nil {
		errs = append(errs, err)
	}
	d.runCancel()
	d.wg.Wait()
	d.fetcher.Close()
	if d.started.Load() {
		if err := d.store.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	d.hardDone()
	if t, ok := d.kafka.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	errs = append(errs, d.ops.Stop(ctx))
	return errors.Join(errs...)
}
