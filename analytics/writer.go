package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// writer moves attempt records from the consumer group over <p>.attempts
// into ClickHouse: one INSERT per batch (BatchRows records or BatchInterval
// after the first one), offsets committed only after the insert succeeded.
// While ClickHouse fails it retries the same batch with backoff and reads
// nothing more, so the backlog stays in Kafka. Malformed records are
// counted, logged and skipped (their offsets are committed with the batch).
type writer struct {
	log    *slog.Logger
	conn   driver.Conn
	insert string
	// rcfg configures reader, which run creates: kafka-go joins the group
	// as soon as a Reader exists, and a group that joins before its topic
	// exists gets an empty assignment and is never rebalanced.
	rcfg   kafka.ReaderConfig
	reader *kafka.Reader
	rows   int
	every  time.Duration
	m      writerMetrics

	// lastErr is the most recent insert failure, nil after a success:
	// the "delivery-log" readiness check reports it.
	lastErr atomic.Pointer[error]
	// lag is the last known lag per partition (collecting goroutine only).
	lag map[int]int64
}

type writerMetrics struct {
	rows, bad, insertErrors, commitErrors prometheus.Counter
	batch, latency                        prometheus.Histogram
	lag                                   prometheus.Gauge
}

func newWriterMetrics(reg prometheus.Registerer) (writerMetrics, error) {
	m := writerMetrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_analytics_rows_inserted_total", Help: "Attempt records inserted into ClickHouse.",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_analytics_bad_messages_total", Help: "Malformed <p>.attempts messages skipped.",
		}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_analytics_insert_errors_total", Help: "Failed ClickHouse inserts (each is retried).",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_analytics_commit_errors_total", Help: "Failed offset commits (the records are re-read and deduplicated).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "zaits_analytics_batch_rows", Help: "Rows per ClickHouse insert.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "zaits_analytics_insert_seconds", Help: "Duration of successful ClickHouse inserts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zaits_analytics_consumer_lag", Help: "Records in <p>.attempts not yet read, summed over the partitions this process reads.",
		}),
	}
	for _, c := range []prometheus.Collector{m.rows, m.bad, m.insertErrors, m.commitErrors, m.batch, m.latency, m.lag} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("analytics metrics: %w", err)
		}
	}
	return m, nil
}

func newWriter(cfg Config, log *slog.Logger, conn driver.Conn, m writerMetrics) *writer {
	rcfg := kafka.ReaderConfig{
		Brokers:        cfg.Kafka.BrokerList(),
		GroupID:        cfg.GroupID(),
		Topic:          cfg.Kafka.Topic(schemas.TopicAttempts),
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        250 * time.Millisecond,
		QueueCapacity:  min(cfg.BatchRows, 10000),
		CommitInterval: 0, // CommitMessages commits synchronously, once per batch
		StartOffset:    kafka.FirstOffset,
		Dialer:         &kafka.Dialer{Timeout: cfg.Kafka.DialTimeout, ClientID: "zaits-analytics"},
		ErrorLogger:    kafka.LoggerFunc(func(f string, a ...any) { log.Warn("kafka reader", "err", fmt.Sprintf(f, a...)) }),
	}
	return &writer{
		log:    log,
		conn:   conn,
		insert: sqlInsertAttempts.in(cfg.ClickHouseDatabase),
		rcfg:   rcfg,
		rows:   cfg.BatchRows,
		every:  cfg.BatchInterval,
		m:      m,
		lag:    map[int]int64{},
	}
}

// run consumes until ctx ends; a batch whose insert has not succeeded by
// then is left uncommitted in Kafka. Collecting (fetch, decode) and
// inserting overlap: while one batch is inserted the next one is collected,
// and no more than two batches are ever held, so during an outage the
// backlog stays in Kafka.
func (w *writer) run(ctx context.Context) {
	w.reader = kafka.NewReader(w.rcfg)
	defer w.closeReader()
	free := make(chan *columns, 2)
	free <- &columns{}
	free <- &columns{}
	full := make(chan batch)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			var bt batch
			select {
			case <-ctx.Done():
				return
			case bt = <-full:
			}
			if bt.cols.len() > 0 && !w.insertWithRetry(ctx, bt.cols) {
				return
			}
			// An inserted batch is committed even when shutdown began meanwhile,
			// so that the next process does not insert it again.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			w.commit(cctx, bt.msgs)
			cancel()
			free <- bt.cols
		}
	})
	defer wg.Wait()
	for ctx.Err() == nil {
		var cols *columns
		select {
		case <-ctx.Done():
			return
		case cols = <-free:
		}
		msgs, err := w.collect(ctx, cols)
		if err != nil {
			free <- cols
			if ctx.Err() == nil {
				w.log.Warn("reading attempts", "err", err)
				retry.Sleep(ctx, time.Second)
			}
			continue
		}
		select {
		case full <- batch{msgs: msgs, cols: cols}:
		case <-ctx.Done():
			return
		}
	}
}

// readerCloseWait bounds leaving the consumer group at shutdown: with the
// group's coordinator moving or gone, kafka-go's Close waits on connection
// timeouts; the process is stopping, so its session's expiry removes the
// member instead. Everything inserted was committed before (run).
const readerCloseWait = 2 * time.Second

// closeReader closes the reader, waiting at most readerCloseWait.
func (w *writer) closeReader() {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if err := w.reader.Close(); err != nil {
			w.log.Debug("analytics: closing the reader", "err", err)
		}
	}()
	select {
	case <-closed:
	case <-time.After(readerCloseWait):
		w.log.Warn("analytics: leaving the consumer group takes longer than " + readerCloseWait.String() + "; the group drops this member when its session expires")
	}
}

// batch is one collected batch: its messages (for the commit) and rows.
type batch struct {
	msgs []kafka.Message
	cols *columns
}

// collect fills b with the next batch and returns its messages (the valid
// and the malformed ones, for the commit).
func (w *writer) collect(ctx context.Context, b *columns) ([]kafka.Message, error) {
	b.reset()
	first, err := w.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []kafka.Message{first}
	w.add(b, first)
	bctx, cancel := context.WithTimeout(ctx, w.every)
	defer cancel()
	for len(msgs) < w.rows {
		m, err := w.reader.FetchMessage(bctx)
		if err != nil {
			if bctx.Err() != nil && ctx.Err() == nil {
				break // the batch interval is over
			}
			return nil, err
		}
		msgs = append(msgs, m)
		w.add(b, m)
	}
	var lag int64
	for _, l := range w.lag {
		lag += l
	}
	w.m.lag.Set(float64(lag))
	return msgs, nil
}

func (w *writer) add(b *columns, m kafka.Message) {
	w.lag[m.Partition] = max(m.HighWaterMark-m.Offset-1, 0)
	var a schemas.Attempt
	if err := decodeAttempt(m.Value, &a); err != nil {
		w.m.bad.Inc()
		w.log.Warn("skipping malformed attempt record", "partition", m.Partition, "offset", m.Offset, "err", err)
		return
	}
	b.add(&a)
}

// decodeAttempt decodes and validates one <p>.attempts value.
func decodeAttempt(v []byte, a *schemas.Attempt) error {
	a.EventPartition, a.EventOffset = -1, -1 // unless the record has them
	if err := json.Unmarshal(v, a); err != nil {
		return fmt.Errorf("%w: %w", errBadAttempt, err)
	}
	return validAttempt(a)
}

// errBadAttempt is wrapped by decodeAttempt and validAttempt.
var errBadAttempt = errors.New("malformed attempt record")

func validAttempt(a *schemas.Attempt) error {
	switch {
	case a.AccountID == "" || a.EndpointID == "" || a.DeliveryID == "":
		return fmt.Errorf("%w: account_id, endpoint_id and delivery_id are required", errBadAttempt)
	case a.Attempt < 1 || a.Attempt > 65535:
		return fmt.Errorf("%w: attempt %d is outside 1..65535", errBadAttempt, a.Attempt)
	case a.Outcome != schemas.OutcomeSuccess && a.Outcome != schemas.OutcomeFailed && a.Outcome != schemas.OutcomeRetrying:
		return fmt.Errorf("%w: outcome %q", errBadAttempt, a.Outcome)
	case a.AttemptedAt.IsZero():
		return fmt.Errorf("%w: attempted_at is required", errBadAttempt)
	case !inDateTime(a.AttemptedAt) || (!a.AcceptedAt.IsZero() && !inDateTime(a.AcceptedAt)) ||
		(a.NextRetryAt != nil && !inDateTime(*a.NextRetryAt)) || a.EventCreated < 0 || a.EventCreated > maxDateTime:
		// A value ClickHouse's DateTime cannot hold would fail the whole
		// batch's insert again and again: such a record is malformed.
		return fmt.Errorf("%w: a time is outside 1970..2105", errBadAttempt)
	}
	return nil
}

// maxDateTime is the last second a ClickHouse DateTime (UInt32) holds.
const maxDateTime = 1<<32 - 1

func inDateTime(t time.Time) bool { return t.Unix() >= 0 && t.Unix() <= maxDateTime }

// insertWithRetry inserts b, retrying with backoff until it succeeds
// (true) or ctx ends (false).
func (w *writer) insertWithRetry(ctx context.Context, b *columns) bool {
	var backoff retry.Backoff
	for {
		start := time.Now()
		err := w.insertOnce(ctx, b)
		if err == nil {
			w.m.latency.Observe(time.Since(start).Seconds())
			w.m.rows.Add(float64(b.len()))
			w.m.batch.Observe(float64(b.len()))
			w.lastErr.Store(nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.m.insertErrors.Inc()
		w.lastErr.Store(&err)
		wait := backoff.Next()
		w.log.Warn("clickhouse insert failed; the batch stays in Kafka and is retried", "rows", b.len(), "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return false
		}
	}
}

func (w *writer) insertOnce(ctx context.Context, b *columns) error {
	batch, err := w.conn.PrepareBatch(ctx, w.insert)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	if err := b.appendTo(batch); err != nil {
		_ = batch.Abort()
		return fmt.Errorf("append insert columns: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send insert: %w", err)
	}
	return nil
}

// commit commits the batch's offsets, retrying a few times. A commit that
// still fails only means the records are read (and deduplicated) again.
func (w *writer) commit(ctx context.Context, msgs []kafka.Message) {
	var backoff retry.Backoff
	for try := 1; ; try++ {
		err := w.reader.CommitMessages(ctx, msgs...)
		if err == nil {
			return
		}
		w.m.commitErrors.Inc()
		if ctx.Err() != nil || try == 5 {
			w.log.Warn("offset commit failed; the batch will be read again and deduplicated", "err", err)
			return
		}
		if !backoff.Wait(ctx) {
			return
		}
	}
}

// ready is the "delivery-log" readiness check: the last insert failed.
func (w *writer) ready(context.Context) error {
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// columns is a batch in column form, appended to the insert column by column.
type columns struct {
	accountID, endpointID, deliveryID, eventID, eventType, outcome []string
	errorCode, errMsg, excerpt, trigger                            []string
	attempt, httpStatus                                            []uint16
	eventPartition                                                 []int32
	eventOffset                                                    []int64
	latency                                                        []uint32
	test                                                           []uint8
	acceptedAt, eventCreated, attemptedAt, nextRetryAt, insertedAt []time.Time
}

func (c *columns) len() int { return len(c.deliveryID) }

func (c *columns) reset() {
	*c = columns{
		accountID: c.accountID[:0], endpointID: c.endpointID[:0], deliveryID: c.deliveryID[:0],
		eventID: c.eventID[:0], eventType: c.eventType[:0], outcome: c.outcome[:0],
		errorCode: c.errorCode[:0], errMsg: c.errMsg[:0], excerpt: c.excerpt[:0],
		attempt: c.attempt[:0], httpStatus: c.httpStatus[:0], latency: c.latency[:0], test: c.test[:0],
		acceptedAt: c.acceptedAt[:0], eventCreated: c.eventCreated[:0], attemptedAt: c.attemptedAt[:0],
		nextRetryAt: c.nextRetryAt[:0], insertedAt: c.insertedAt[:0],
		trigger: c.trigger[:0], eventPartition: c.eventPartition[:0], eventOffset: c.eventOffset[:0],
	}
}

// maxExcerpt bounds the stored response excerpt (bytes).
const maxExcerpt = 1024

func (c *columns) add(a *schemas.Attempt) {
	now := time.Now().UTC()
	accepted := a.AcceptedAt
	if accepted.IsZero() && a.EventCreated > 0 {
		accepted = time.Unix(a.EventCreated, 0)
	}
	if accepted.IsZero() {
		accepted = a.AttemptedAt
	}
	var next time.Time
	if a.NextRetryAt != nil {
		next = *a.NextRetryAt
	} else {
		next = time.Unix(0, 0)
	}
	excerpt := a.ResponseExcerpt
	if len(excerpt) > maxExcerpt {
		excerpt = strings.ToValidUTF8(excerpt[:maxExcerpt], "")
	}
	var test uint8
	if a.Test {
		test = 1
	}
	c.accountID = append(c.accountID, a.AccountID)
	c.endpointID = append(c.endpointID, a.EndpointID)
	c.acceptedAt = append(c.acceptedAt, accepted)
	c.deliveryID = append(c.deliveryID, a.DeliveryID)
	c.attempt = append(c.attempt, uint16(a.Attempt))
	c.eventID = append(c.eventID, a.EventID)
	c.eventType = append(c.eventType, a.EventType)
	c.outcome = append(c.outcome, a.Outcome)
	c.httpStatus = append(c.httpStatus, uint16(min(max(a.HTTPStatus, 0), 65535)))
	c.latency = append(c.latency, uint32(min(max(a.LatencyMS, 0), 1<<32-1)))
	c.errorCode = append(c.errorCode, a.ErrorCode)
	c.errMsg = append(c.errMsg, a.Error)
	c.excerpt = append(c.excerpt, excerpt)
	c.test = append(c.test, test)
	c.eventCreated = append(c.eventCreated, time.Unix(max(a.EventCreated, 0), 0))
	c.attemptedAt = append(c.attemptedAt, a.AttemptedAt)
	c.nextRetryAt = append(c.nextRetryAt, next)
	c.insertedAt = append(c.insertedAt, now)
	c.trigger = append(c.trigger, a.Trigger)
	c.eventPartition = append(c.eventPartition, int32(a.EventPartition))
	c.eventOffset = append(c.eventOffset, a.EventOffset)
}

// appendTo appends the columns in sqlInsertAttempts' column order.
func (c *columns) appendTo(b driver.Batch) error {
	cols := []any{
		c.accountID, c.endpointID, c.acceptedAt, c.deliveryID, c.attempt, c.eventID, c.eventType, c.outcome,
		c.httpStatus, c.latency, c.errorCode, c.errMsg, c.excerpt, c.test, c.eventCreated, c.attemptedAt,
		c.nextRetryAt, c.insertedAt, c.trigger, c.eventPartition, c.eventOffset,
	}
	for i, v := range cols {
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}
