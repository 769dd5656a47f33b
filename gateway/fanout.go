package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// FanoutConfig configures the router: the consumer group over <p>.events
// that turns every event into one delivery task per subscribed, active
// endpoint of its account.
type FanoutConfig struct {
	// Disabled runs the gateway without its router (ingest only), for
	// deployments that scale routers separately. Default false.
	Disabled bool
	// Group is the consumer group; empty means "<kafka.topic-prefix>.router".
	Group string
	// CommitInterval is how often finished offsets are committed (also on
	// rebalance and shutdown). Default 1s.
	CommitInterval time.Duration
	// Linger is how long the task writer waits to fill a batch. Default 1ms.
	Linger time.Duration
	// SessionTimeout is how soon the group reassigns the partitions of a
	// router that stopped heartbeating (crashed). Default 10s.
	SessionTimeout time.Duration
	// DedupWindow is how long an event id is remembered (at least 1h).
	// Default 1h.
	DedupWindow time.Duration
	// DedupIDs bounds the ids remembered per partition of <p>.events
	// (about 32 bytes each). Default 500000.
	DedupIDs int
}

// RegisterFlags registers the gateway.fanout-* flags with their defaults.
func (c *FanoutConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Disabled, "gateway.fanout-disabled", false, "do not run the router (fan-out of events to delivery tasks) in this gateway")
	fs.StringVar(&c.Group, "gateway.fanout-group", "", "consumer group of the router (empty: <kafka.topic-prefix>.router)")
	fs.DurationVar(&c.CommitInterval, "gateway.fanout-commit-interval", time.Second, "how often the router commits the offsets of events whose tasks are acknowledged")
	fs.DurationVar(&c.Linger, "gateway.fanout-linger", time.Millisecond, "how long the router's task writer waits to fill a batch")
	fs.DurationVar(&c.SessionTimeout, "gateway.fanout-session-timeout", 10*time.Second, "how soon the partitions of a router that stopped heartbeating move to another one")
	fs.DurationVar(&c.DedupWindow, "gateway.fanout-dedup-window", time.Hour, "how long a routed event id is remembered to drop a re-published duplicate (at least 1h)")
	fs.IntVar(&c.DedupIDs, "gateway.fanout-dedup-ids", 500000, "event ids remembered per partition of <p>.events (~32 bytes each); bounds the window's memory")
}

// Validate reports every problem with the configuration at once.
func (c *FanoutConfig) Validate() error {
	var errs []error
	if c.CommitInterval < 10*time.Millisecond || c.CommitInterval > time.Minute {
		errs = append(errs, fmt.Errorf("gateway.fanout-commit-interval: must be 10ms..1m, got %s", c.CommitInterval))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("gateway.fanout-linger: must be 0..1s, got %s", c.Linger))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("gateway.fanout-session-timeout: must be 6s..5m (the broker's group session bounds), got %s", c.SessionTimeout))
	}
	if c.DedupWindow < time.Hour {
		errs = append(errs, fmt.Errorf("gateway.fanout-dedup-window: must be at least 1h, got %s", c.DedupWindow))
	}
	if c.DedupIDs < 1000 {
		errs = append(errs, fmt.Errorf("gateway.fanout-dedup-ids: must be at least 1000, got %d", c.DedupIDs))
	}
	return errors.Join(errs...)
}

// fetchMaxBytes bounds one fetch of a partition: the unit of routing,
// writing and committing.
const fetchMaxBytes = 4 << 20

// headerIngest marks events the HTTP API wrote, so that the router counts
// only the others as accepted on the Kafka path.
const headerIngest = "zaits-ingest"

// fanout is the router. Each assigned partition of <p>.events is handled
// by one goroutine, in offset order: fetch a batch, build the tasks of every
// event (quarantining invalid messages, dropping duplicates), write them all
// with acks=all, then mark the batch finished. A committer commits the
// finished offsets every CommitInterval and when the generation ends, so an
// offset is committed only after every task of the events before it was
// acknowledged. One account's events share a partition, and its writes are
// made in order, so each endpoint's task stream keeps the account's order.
type fanout struct {
	cfg        FanoutConfig
	kafka      *broker.Config
	store      *endpoint.Store
	log        *slog.Logger
	client     *kafka.Client
	writer     *kafka.Writer
	events     string
	deliveries string
	invalid    string
	group      string
	counts     *eventCounters

	routed      prometheus.Counter
	tasks       prometheus.Counter
	factor      prometheus.Histogram
	duplicates  prometheus.Counter
	quarantined *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	window      *prometheus.GaugeVec
	retries     prometheus.Counter
	commitErrs  prometheus.Counter

	cancel  context.CancelFunc
	done    chan struct{}
	aborted atomic.Bool
}

func newFanout(cfg FanoutConfig, kc *broker.Config, store *endpoint.Store, counts *eventCounters, log *slog.Logger, reg prometheus.Registerer) *fanout {
	group := cfg.Group
	if group == "" {
		group = kc.TopicPrefix + ".router"
	}
	w := kc.NewWriter("", cfg.Linger)
	w.BatchSize = 500 // kafka-go allocates BatchSize messages per partition batch
	f := &fanout{
		cfg: cfg, kafka: kc, store: store, log: log, client: kc.Client(), writer: w, counts: counts, group: group,
		events:     kc.Topic(schemas.TopicEvents),
		deliveries: kc.Topic(schemas.TopicDeliveries),
		invalid:    kc.Topic(schemas.TopicEventsInvalid),
		routed: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_gateway_fanout_events_total",
			Help: "Events the router fanned out (after dropping duplicates), with or without subscribers."}),
		tasks: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_gateway_fanout_tasks_total",
			Help: "Delivery tasks written to <p>.deliveries and acknowledged."}),
		factor: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zaits_gateway_fanout_factor",
			Help: "Delivery tasks per routed event (subscribed active endpoints).", Buckets: []float64{0, 1, 2, 3, 5, 8, 13, 21, 50, 100}}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_gateway_fanout_duplicates_total",
			Help: "Events dropped because their (account, id) was routed within the idempotency window."}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_gateway_fanout_quarantined_total",
			Help: "Messages of <p>.events moved to <p>.events.invalid, by reason."}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zaits_gateway_fanout_lag",
			Help: "Messages of <p>.events not yet routed (high-water mark minus next offset), per assigned partition."}, []string{"partition"}),
		window: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zaits_gateway_fanout_dedup_window_seconds",
			Help: "Span of the idempotency window in force per assigned partition (below the configured window when the id bound is reached)."}, []string{"partition"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_gateway_fanout_write_retries_total",
			Help: "Task writes retried after Kafka refused or timed out (the batch is retried, never skipped)."}),
		commitErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_gateway_fanout_commit_errors_total",
			Help: "Offset commits that failed (retried at the next interval)."}),
	}
	if reg != nil {
		reg.MustRegister(f.routed, f.tasks, f.factor, f.duplicates, f.quarantined, f.lag, f.window, f.retries, f.commitErrs)
	}
	return f
}

// Start runs the router in the background until Stop.
func (f *fanout) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go f.run(ctx)
}

// Stop finishes the batches in progress, commits their offsets, leaves the
// group and flushes the writer.
func (f *fanout) Stop(ctx context.Context) error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	select {
	case <-f.done:
	case <-ctx.Done():
		return fmt.Errorf("router stop: %w", ctx.Err())
	}
	return f.writer.Close()
}

// abort stops the router the way a crash does: no further commit, so the
// events after the last committed offset are routed again by the next owner.
func (f *fanout) abort() {
	f.aborted.Store(true)
	f.cancel()
	<-f.done
	f.writer.Close()
}

func (f *fanout) run(ctx context.Context) {
	defer close(f.done)
	cg, err := f.kafka.NewGroup(kafka.ConsumerGroupConfig{
		ID:                f.group,
		Topics:            []string{f.events},
		Dialer:            &kafka.Dialer{Timeout: f.kafka.DialTimeout, ClientID: "zaits-router"},
		SessionTimeout:    f.cfg.SessionTimeout,
		HeartbeatInterval: f.cfg.SessionTimeout / 4,
		RebalanceTimeout:  f.cfg.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		ErrorLogger:       kafka.LoggerFunc(func(msg string, args ...any) { f.log.Debug("router group: " + fmt.Sprintf(msg, args...)) }),
	}, f.log)
	if err != nil { // only a configuration error
		f.log.Error("router cannot start", "err", err)
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
			f.log.Warn("router: joining the consumer group", "group", f.group, "err", err)
			continue
		}
		f.generation(ctx, gen)
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
func (f *fanout) generation(ctx context.Context, gen *kafka.Generation) {
	assigned := gen.Assignments[f.events]
	f.log.Info("router assigned partitions", "group", f.group, "generation", gen.ID, "partitions", len(assigned))
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
			f.partition(pctx, a, prog)
		})
	}
	gen.Start(func(gctx context.Context) {
		t := time.NewTicker(f.cfg.CommitInterval)
		defer t.Stop()
		committed := map[int]int64{}
		for {
			select {
			case <-t.C:
				if !f.aborted.Load() {
					f.commit(gen, prog, committed)
				}
				f.measureLag(gctx, prog)
			case <-gctx.Done():
				wg.Wait() // every partition goroutine finished its batch
				for _, a := range assigned {
					f.lag.DeleteLabelValues(strconv.Itoa(a.ID))
				}
				if !f.aborted.Load() {
					f.commit(gen, prog, committed)
				}
				return
			}
		}
	})
}

// commit commits the offsets that moved since the last commit.
func (f *fanout) commit(gen *kafka.Generation, prog *progress, committed map[int]int64) {
	offs := prog.snapshot()
	for p, o := range offs {
		if committed[p] == o {
			delete(offs, p)
		}
	}
	if len(offs) == 0 {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{f.events: offs}); err != nil {
		f.commitErrs.Inc()
		f.log.Warn("router: committing offsets (retried at the next interval)", "err", err)
		return
	}
	for p, o := range offs {
		committed[p] = o
	}
}

// measureLag sets the lag of each partition in prog: the high-water mark
// now minus the next offset to route. It is measured apart from the
// partition goroutines so that a stuck one shows a growing lag.
func (f *fanout) measureLag(ctx context.Context, prog *progress) {
	next := prog.snapshot()
	if len(next) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.CommitInterval)
	defer cancel()
	_, hwm, err := broker.Offsets(ctx, f.client, f.events)
	if err != nil {
		return
	}
	for p, o := range next {
		f.lag.WithLabelValues(strconv.Itoa(p)).Set(float64(max(hwm[p]-o, 0)))
	}
}

// record is one message of <p>.events, copied out of the fetch response.
type record struct {
	offset  int64
	time    time.Time
	key     []byte
	value   []byte
	headers []kafka.Header
}

type fetched struct {
	records []record
}

// partition routes one partition from the assigned offset until ctx ends.
func (f *fanout) partition(ctx context.Context, a kafka.PartitionAssignment, prog *progress) {
	p := a.ID
	label := strconv.Itoa(p)
	defer f.window.DeleteLabelValues(label)
	var next int64
	win := newDedupWindow(f.cfg.DedupWindow, f.cfg.DedupIDs)
	for attempt := 0; ; attempt++ {
		var err error
		if next, err = f.resolve(ctx, p, a.Offset); err == nil {
			err = f.rebuild(ctx, p, next, win)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("router: preparing partition", "partition", p, "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return
		}
	}
	f.log.Debug("router: partition ready", "partition", p, "offset", next, "dedup_ids", win.Len())
	prog.set(p, next)

	// A fetcher reads ahead while the previous batch is being written.
	batches := make(chan fetched, 1)
	fctx, cancel := context.WithCancel(ctx)
	var fetcher sync.WaitGroup
	fetcher.Add(1)
	go func() {
		defer fetcher.Done()
		defer close(batches)
		f.fetchLoop(fctx, p, next, batches)
	}()
	defer func() { cancel(); fetcher.Wait() }()

	var out []kafka.Message
	var subs []*endpoint.Entry
	for b := range batches {
		out = out[:0]
		var dup, routed, tasks int
		for i := range b.records {
			r := &b.records[i]
			ev, reason, why := f.decode(p, r)
			if reason != "" {
				out = append(out, f.quarantine(p, r, why))
				f.quarantined.WithLabelValues(reason).Inc()
				f.counts.rejected.WithLabelValues("kafka", reason).Inc()
				continue
			}
			if win.Seen(ev.AccountID, ev.ID, r.time) {
				dup++
				continue
			}
			if !fromHTTP(r.headers) {
				f.counts.accepted.WithLabelValues("kafka").Inc()
			}
			subs = f.store.Subscribed(subs[:0], ev.AccountID, ev.Type)
			f.factor.Observe(float64(len(subs)))
			routed++
			if len(subs) == 0 {
				continue
			}
			body := payload(&ev)
			for _, e := range subs {
				t := schemas.Task{
					DeliveryID: schemas.DeliveryID(ev.ID, e.ID),
					EventID:    ev.ID,
					EventType:  ev.Type,
					AccountID:  ev.AccountID,
					EndpointID: e.ID,
					Attempt:    1,
					AcceptedAt: r.time,
					Body:       body,
				}
				out = append(out, t.Message(f.deliveries))
			}
			tasks += len(subs)
		}
		if err := f.write(ctx, out); err != nil {
			return // ctx ended: this batch is not finished and not committed
		}
		last := b.records[len(b.records)-1].offset
		prog.set(p, last+1)
		f.routed.Add(float64(routed))
		f.tasks.Add(float64(tasks))
		f.duplicates.Add(float64(dup))
		f.window.WithLabelValues(label).Set(win.Age().Seconds())
	}
}

// write writes msgs with acks=all, retrying what failed until it succeeds
// or ctx ends. A batch is never skipped: a retry may repeat a task, never
// lose one, and per partition the order stays (kafka-go fails a partition's
// batch as a whole, so what is retried is a suffix per partition).
func (f *fanout) write(ctx context.Context, msgs []kafka.Message) error {
	for attempt := 0; len(msgs) > 0; attempt++ {
		err := f.writer.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			failed := msgs[:0:0]
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, msgs[i])
				}
			}
			msgs = failed
		}
		f.retries.Inc()
		f.log.Warn("router: writing tasks failed, retrying", "messages", len(msgs), "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
	return nil
}

// decode parses and validates one message of <p>.events. On failure it
// returns a metric label and the reason for the quarantine header.
func (f *fanout) decode(p int, r *record) (schemas.Event, string, string) {
	if len(r.value) == 0 {
		return schemas.Event{}, "empty", "empty message (the value must be the event JSON)"
	}
	ev, issues := parseEvent(r.value, "")
	if len(issues) > 0 {
		return ev, reasonLabel(issues), issuesText(issues)
	}
	if string(r.key) != ev.AccountID {
		return ev, "key", fmt.Sprintf("key: must equal account_id %q (got %q)", ev.AccountID, truncate(string(r.key), 64))
	}
	if ev.ID == "" {
		ev.ID = kafkaEventID(f.events, p, r.offset)
	}
	if ev.Created == 0 {
		ev.Created = r.time.Unix()
	}
	return ev, "", ""
}

// quarantine is the <p>.events.invalid copy of r: its key, value and
// headers, plus the reason and where it came from.
func (f *fanout) quarantine(p int, r *record, why string) kafka.Message {
	h := append(r.headers[:len(r.headers):len(r.headers)],
		kafka.Header{Key: schemas.HeaderInvalidReason, Value: []byte(why)},
		kafka.Header{Key: "zaits-source", Value: fmt.Appendf(nil, "%s/%d/%d", f.events, p, r.offset)})
	return kafka.Message{Topic: f.invalid, Key: r.key, Value: r.value, Headers: h, Time: r.time}
}

func fromHTTP(h []kafka.Header) bool {
	for _, x := range h {
		if x.Key == headerIngest {
			return true
		}
	}
	return false
}

// resolve turns the assigned offset (possibly FirstOffset) into an absolute one.
func (f *fanout) resolve(ctx context.Context, p int, offset int64) (int64, error) {
	if offset >= 0 {
		return offset, nil
	}
	first, err := f.listOffset(ctx, p, kafka.FirstOffset)
	if err != nil {
		return 0, err
	}
	return first, nil
}

// listOffset asks for the first offset (kafka.FirstOffset) or the first
// offset at or after a unix-millisecond time; -1 when there is none.
func (f *fanout) listOffset(ctx context.Context, p int, ts int64) (int64, error) {
	resp, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{f.events: {{Partition: p, Timestamp: ts}}}})
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d: %w", f.events, p, err)
	}
	for _, po := range resp.Topics[f.events] {
		if po.Partition != p {
			continue
		}
		if po.Error != nil {
			return 0, fmt.Errorf("list offsets of %s/%d: %w", f.events, p, po.Error)
		}
		if ts == kafka.FirstOffset {
			return po.FirstOffset, nil
		}
		for off := range po.Offsets {
			return off, nil
		}
		return -1, nil
	}
	return -1, nil
}

// rebuild fills win from the events before offset that are inside the
// window (at most DedupIDs of them): what the previous owner remembered.
func (f *fanout) rebuild(ctx context.Context, p int, offset int64, win *dedupWindow) error {
	from, err := f.listOffset(ctx, p, time.Now().Add(-f.cfg.DedupWindow).UnixMilli())
	if err != nil {
		return err
	}
	if from < 0 || from >= offset {
		return nil
	}
	from = max(from, offset-int64(f.cfg.DedupIDs))
	for from < offset {
		b, err := f.fetch(ctx, p, from)
		if err != nil {
			return err
		}
		for i := range b.records {
			r := &b.records[i]
			if r.offset >= offset {
				return nil
			}
			if ev, reason, _ := f.decode(p, r); reason == "" {
				win.Seen(ev.AccountID, ev.ID, r.time)
			}
			from = r.offset + 1
		}
		if len(b.records) == 0 {
			return nil // nothing more below offset (a gap of control records)
		}
	}
	return nil
}

// fetchLoop fetches batches from offset on until ctx ends.
func (f *fanout) fetchLoop(ctx context.Context, p int, offset int64, out chan<- fetched) {
	for attempt := 0; ctx.Err() == nil; {
		b, err := f.fetch(ctx, p, offset)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			first, lerr := f.listOffset(ctx, p, kafka.FirstOffset)
			if lerr == nil && first > offset {
				f.log.Error("router: events were deleted by retention before they were routed", "partition", p, "from", offset, "to", first)
				offset = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("router: fetching events", "partition", p, "offset", offset, "err", err)
			if !sleep(ctx, backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		if len(b.records) == 0 {
			continue
		}
		offset = b.records[len(b.records)-1].offset + 1
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// fetch reads the records at and after offset that one fetch returns.
func (f *fanout) fetch(ctx context.Context, p int, offset int64) (fetched, error) {
	resp, err := f.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: f.events, Partition: p, Offset: offset, MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: 500 * time.Millisecond,
	})
	if err != nil {
		return fetched{}, err
	}
	if resp.Error != nil {
		return fetched{}, fmt.Errorf("fetch %s/%d at %d: %w", f.events, p, offset, resp.Error)
	}
	var b fetched
	for {
		rec, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			if len(b.records) > 0 { // a truncated last batch: the next fetch starts there
				return b, nil
			}
			return fetched{}, fmt.Errorf("reading %s/%d at %d: %w", f.events, p, offset, err)
		}
		if rec.Offset < offset { // a compressed batch may start before offset
			continue
		}
		r := record{offset: rec.Offset, time: rec.Time}
		if r.key, err = readBytes(rec.Key); err == nil {
			r.value, err = readBytes(rec.Value)
		}
		if err != nil {
			return fetched{}, fmt.Errorf("reading %s/%d at %d: %w", f.events, p, rec.Offset, err)
		}
		for _, h := range rec.Headers {
			r.headers = append(r.headers, kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
		}
		b.records = append(b.records, r)
	}
}

func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}

// backoff is at most 1 s: a broker failure is over for Kafka once the
// controller fenced the broker, and waiting longer only adds to the stall.
func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), time.Second)
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
