package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/schemas"
)

// Ingestion limits.
const (
	// MaxBatchBytes bounds the body of POST /v1/events/batch; larger is 413.
	MaxBatchBytes = 5 << 20
	// MaxEventBytes bounds the body of POST /v1/events: the data limit plus
	// room for the other fields.
	MaxEventBytes = schemas.MaxEventDataBytes + 8<<10
)

// IngestConfig configures POST /v1/events and /v1/events/batch. A zero
// field means its default.
type IngestConfig struct {
	// Timeout bounds the wait for Kafka's acknowledgement of a request's
	// events; when it passes, the answer is 503 with Retry-After. Default 5s.
	Timeout time.Duration
	// Linger is how long the event writer waits, after a request's events,
	// for more to write with them. Default 0: at once; concurrent requests
	// still share produce requests, those that arrive while writes are in
	// flight (broker.Batcher).
	Linger time.Duration
	// RetryAfter is the Retry-After of a 503. Default 1s.
	RetryAfter time.Duration
}

func (c IngestConfig) withDefaults() IngestConfig {
	flagenv.Default(&c.Timeout, 5*time.Second)
	flagenv.Default(&c.RetryAfter, time.Second)
	return c
}

// RegisterFlags registers the gateway.ingest-* flags with their defaults.
func (c *IngestConfig) RegisterFlags(fs *flag.FlagSet) {
	d := IngestConfig{}.withDefaults()
	fs.DurationVar(&c.Timeout, "gateway.ingest-timeout", d.Timeout, "how long an event request waits for Kafka's acks=all before answering 503")
	fs.DurationVar(&c.Linger, "gateway.ingest-linger", d.Linger, "how long the event writer waits for more events to write with a request's (0: at once; concurrent requests share produce requests anyway)")
	fs.DurationVar(&c.RetryAfter, "gateway.ingest-retry-after", d.RetryAfter, "Retry-After of a 503 when Kafka did not acknowledge in time")
}

// validate reports every problem of a configuration with its defaults applied.
func (c IngestConfig) validate() error {
	var errs []error
	if c.Timeout < 100*time.Millisecond || c.Timeout > time.Minute {
		errs = append(errs, fmt.Errorf("gateway.ingest-timeout: must be 100ms..1m, got %s", c.Timeout))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("gateway.ingest-linger: must be 0..1s, got %s", c.Linger))
	}
	if c.RetryAfter < time.Second || c.RetryAfter > time.Hour {
		errs = append(errs, fmt.Errorf("gateway.ingest-retry-after: must be 1s..1h, got %s", c.RetryAfter))
	}
	return errors.Join(errs...)
}

// eventCounters count the events this API accepted and rejected (label
// path "http"; the router counts what producers write to <p>.events
// themselves, zaits_router_events_total{source="kafka"}).
type eventCounters struct {
	accepted *prometheus.CounterVec // path
	rejected *prometheus.CounterVec // path, reason

	acceptedHTTP prometheus.Counter
}

func newEventCounters(reg prometheus.Registerer) *eventCounters {
	c := &eventCounters{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_gateway_events_accepted_total",
			Help: "Events accepted into <p>.events over HTTP (acknowledged by Kafka), by path (http)."}, []string{"path"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_gateway_events_rejected_total",
			Help: "Events rejected over HTTP, by path (http) and reason (the first invalid field, json, forbidden, too_large, unavailable, unauthorized, batch)."}, []string{"path", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(c.accepted, c.rejected)
	}
	c.acceptedHTTP = c.accepted.WithLabelValues("http")
	return c
}

// ingester writes events to <p>.events and answers once Kafka acknowledged
// them (acks=all). One writer serves every request: concurrent requests'
// events share Kafka batches, so a single-event request costs a share of a
// produce round trip, not one of its own.
type ingester struct {
	cfg     IngestConfig
	writer  *broker.Batcher
	topic   string // <p>.events
	counts  *eventCounters
	latency *prometheus.HistogramVec

	eventLatency, batchLatency prometheus.Observer

	// When the last write Kafka acknowledged in full, and the last one it
	// did not (unix nanoseconds), with that one's error: readiness (ready).
	lastOK, lastFailed atomic.Int64
	failure            atomic.Pointer[error]
}

// failingFor is how long a failed event write keeps the gateway not ready
// unless a later write succeeds: long enough for a load balancer to see it,
// short enough that a gateway taken out of rotation (no writes to prove it
// healthy again) comes back on its own and is judged by real traffic.
const failingFor = 5 * time.Second

// ready reports an error while the latest event write failed within failingFor.
func (in *ingester) ready(now time.Time) error {
	failed := in.lastFailed.Load()
	if failed == 0 || failed < in.lastOK.Load() || now.Sub(time.Unix(0, failed)) > failingFor {
		return nil
	}
	err := errors.New("unknown")
	if p := in.failure.Load(); p != nil {
		err = *p
	}
	return fmt.Errorf("event writes to Kafka are failing (last %s ago): %w", now.Sub(time.Unix(0, failed)).Round(time.Millisecond), err)
}

func newIngester(cfg IngestConfig, kc *broker.Config, counts *eventCounters, reg prometheus.Registerer) *ingester {
	cfg = cfg.withDefaults()
	in := &ingester{cfg: cfg, writer: kc.NewBatcher(cfg.Linger, cfg.Timeout), topic: kc.Topic(schemas.TopicEvents), counts: counts,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zaits_gateway_ingest_request_seconds",
			Help:    "Duration of event requests, from decoding to the answer (Kafka's acknowledgement included), by route.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(in.latency)
	}
	in.eventLatency, in.batchLatency = in.latency.WithLabelValues("event"), in.latency.WithLabelValues("batch")
	return in
}

func (in *ingester) close() error {
	in.writer.Close()
	return nil
}

// ingestAuth authenticates an event request: an account API key or a
// service token. It answers 401 (or 429) itself when ok is false.
func (g *Gateway) ingestAuth(ctx *fasthttp.RequestCtx) (principal, bool) {
	p, ok := g.authenticate(ctx)
	if !ok {
		g.unauthorized(ctx, true)
	}
	return p, ok
}

// postEvent is POST /v1/events.
func (g *Gateway) postEvent(ctx *fasthttp.RequestCtx) {
	if p, ok := g.ingestAuth(ctx); ok {
		g.ingest.single(ctx, p)
	}
}

// postEventBatch is POST /v1/events/batch.
func (g *Gateway) postEventBatch(ctx *fasthttp.RequestCtx) {
	if p, ok := g.ingestAuth(ctx); ok {
		g.ingest.batch(ctx, p)
	}
}

// itemError is why one event was not accepted.
type itemError struct {
	status  int
	code    string
	message string
	details []schemas.FieldIssue
}

// prepare validates one event for p and encodes its <p>.events message.
func (in *ingester) prepare(b []byte, p principal, now time.Time) (kafka.Message, string, *itemError) {
	ev, issues := schemas.ParseEvent(b, p.AccountID)
	if len(issues) > 0 {
		in.counts.rejected.WithLabelValues("http", schemas.ReasonLabel(issues)).Inc()
		if issues[0].Field == "" {
			return kafka.Message{}, "", &itemError{status: fasthttp.StatusBadRequest, code: "invalid_json", message: "the event must be a JSON object"}
		}
		return kafka.Message{}, "", &itemError{status: fasthttp.StatusBadRequest, code: "validation_error", message: schemas.IssuesText(issues), details: issues}
	}
	if !p.Service && ev.AccountID != p.AccountID {
		in.counts.rejected.WithLabelValues("http", "forbidden").Inc()
		return kafka.Message{}, "", &itemError{status: fasthttp.StatusForbidden, code: "forbidden",
			message: "an account API key may publish events only for its own account; omit account_id or use a service token",
			details: []schemas.FieldIssue{{Field: "account_id", Issue: "is not the account of this API key"}}}
	}
	if ev.ID == "" {
		ev.ID = schemas.NewEventID()
	}
	if ev.Created == 0 {
		ev.Created = now.Unix()
	}
	return kafka.Message{
		Key:     []byte(ev.AccountID),     // copies: nothing of the request outlives the handler
		Value:   schemas.EncodeEvent(&ev), // a new buffer: data is copied out of the request
		Headers: []kafka.Header{{Key: schemas.HeaderIngest, Value: []byte("http")}},
	}, ev.ID, nil
}

// produce writes msgs and waits for acks=all, at most Timeout. It returns
// per message whether it was stored: all nil on success; a non-nil entry
// for each message Kafka did not acknowledge (all of them on a timeout).
func (in *ingester) produce(msgs []kafka.Message) []error {
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.Timeout)
	defer cancel()
	for i := range msgs {
		msgs[i].Topic = in.topic
	}
	errs := in.writer.Write(ctx, msgs)
	for _, err := range errs {
		if err != nil {
			in.failure.Store(&err)
			in.lastFailed.Store(time.Now().UnixNano())
			return errs
		}
	}
	in.lastOK.Store(time.Now().UnixNano())
	return errs
}

// HeaderEventID names, on a 503 of POST /v1/events, the id the event was
// given (the producer's, or the generated one).
const HeaderEventID = "X-Zaits-Event-Id"

// unavailable answers 503 with Retry-After for events Kafka did not
// acknowledge in time. A write that timed out may still be stored, so the
// answer names each event's id (details: field "id" or "events[i].id", the
// id after "retry with id "): a retry with the same id is dropped as a
// duplicate by the router's idempotency window, one with a new id is not.
func (in *ingester) unavailable(ctx *fasthttp.RequestCtx, ids []schemas.FieldIssue) {
	in.retryLater(ctx, len(ids))
	writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable",
		"Kafka did not acknowledge in time: the events are not accepted (some may still be stored); retry after the Retry-After seconds with the same event ids", ids...)
}

// retryLater counts n events Kafka did not acknowledge and sets Retry-After.
func (in *ingester) retryLater(ctx *fasthttp.RequestCtx, n int) {
	in.counts.rejected.WithLabelValues("http", "unavailable").Add(float64(n))
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int(in.cfg.RetryAfter.Seconds())))
}

// retryWith is the detail naming the id a not-acknowledged event must be retried with.
func retryWith(field, id string) schemas.FieldIssue {
	return schemas.FieldIssue{Field: field, Issue: "not acknowledged in time; retry with id " + id}
}

type acceptedEvent struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

type okEnvelope struct {
	Success bool `json:"success"`
	Data    any  `json:"data"`
}

func checkIngestBody(ctx *fasthttp.RequestCtx, limit int) *requestError {
	body := ctx.PostBody()
	if len(body) > limit {
		return &requestError{status: fasthttp.StatusRequestEntityTooLarge, code: "payload_too_large",
			message: fmt.Sprintf("the request body is %d bytes; at most %d are accepted", len(body), limit)}
	}
	if !isJSON(ctx.Request.Header.ContentType()) {
		return &requestError{status: fasthttp.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: fmt.Sprintf("Content-Type must be application/json, got %q", ctx.Request.Header.ContentType())}
	}
	return nil
}

// single answers POST /v1/events: 202 {"id", "status": "accepted"} once
// Kafka acknowledged the event.
func (in *ingester) single(ctx *fasthttp.RequestCtx, p principal) {
	start := time.Now()
	defer func() { in.eventLatency.Observe(time.Since(start).Seconds()) }()
	if rerr := checkIngestBody(ctx, MaxEventBytes); rerr != nil {
		in.counts.rejected.WithLabelValues("http", "too_large").Inc()
		rerr.write(ctx)
		return
	}
	msg, id, ierr := in.prepare(ctx.PostBody(), p, start)
	if ierr != nil {
		writeError(ctx, ierr.status, ierr.code, ierr.message, ierr.details...)
		return
	}
	if err := in.produce([]kafka.Message{msg})[0]; err != nil {
		ctx.Response.Header.Set(HeaderEventID, id)
		in.unavailable(ctx, []schemas.FieldIssue{retryWith("id", id)})
		return
	}
	in.counts.acceptedHTTP.Inc()
	writeJSON(ctx, fasthttp.StatusAccepted, okEnvelope{Success: true, Data: acceptedEvent{ID: id, Status: "accepted"}})
}

// batchResult is the outcome of one event of a batch, by its index.
type batchResult struct {
	Index  int       `json:"index"`
	Status string    `json:"status"` // "accepted" or "rejected"
	ID     string    `json:"id,omitempty"`
	Error  *apiError `json:"error,omitempty"`
	status int       // the item's own HTTP status, for the answer's status
}

type batchData struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Results  []batchResult `json:"results"`
}

// batch answers POST /v1/events/batch, body {"events": [...]}, with one
// result per event, in order, each with its index:
//
//   - 202: every event accepted (stored with acks=all);
//   - 207: some accepted, the others rejected with their error (their
//     status tells which to fix and which to retry: validation_error and
//     forbidden must be fixed, unavailable must be retried with the id
//     its result carries);
//   - 400 / 403: nothing accepted because every event is invalid /
//     forbidden; the error envelope lists each problem as events[i].field;
//   - 503 + Retry-After: Kafka acknowledged nothing in time; the details
//     name every event's id (events[i].id) to retry it with.
//
// Errors of the batch itself (not JSON, no events array, more than 1,000
// events, over 5 MiB) are answered with the error envelope and accept nothing.
func (in *ingester) batch(ctx *fasthttp.RequestCtx, p principal) {
	start := time.Now()
	defer func() { in.batchLatency.Observe(time.Since(start).Seconds()) }()
	if rerr := checkIngestBody(ctx, MaxBatchBytes); rerr != nil {
		in.counts.rejected.WithLabelValues("http", "too_large").Inc()
		rerr.write(ctx)
		return
	}
	items, rerr := decodeBatch(ctx.PostBody())
	if rerr != nil {
		in.counts.rejected.WithLabelValues("http", "batch").Inc()
		rerr.write(ctx)
		return
	}
	results := make([]batchResult, len(items))
	msgs := make([]kafka.Message, 0, len(items))
	idx := make([]int, 0, len(items)) // msgs[j] is items[idx[j]]
	for i, b := range items {
		results[i].Index = i
		msg, id, ierr := in.prepare(b, p, start)
		if ierr != nil {
			results[i].Status = "rejected"
			results[i].Error = &apiError{Code: ierr.code, Message: ierr.message, Details: ierr.details}
			results[i].status = ierr.status
			continue
		}
		results[i].ID = id
		msgs = append(msgs, msg)
		idx = append(idx, i)
	}
	var failed []schemas.FieldIssue
	for j, err := range in.produce(msgs) {
		r := &results[idx[j]]
		if err != nil {
			// The id stays in the result: retried with it, a copy
			// Kafka stored late is dropped as a duplicate.
			failed = append(failed, retryWith(fmt.Sprintf("events[%d].id", r.Index), r.ID))
			r.Status, r.status = "rejected", fasthttp.StatusServiceUnavailable
			r.Error = &apiError{Code: "unavailable", Message: "Kafka did not acknowledge this event in time (it may still be stored); retry it with the same id",
				Details: []schemas.FieldIssue{retryWith("id", r.ID)}}
			continue
		}
		r.Status = "accepted"
	}
	accepted := len(msgs) - len(failed)
	in.counts.acceptedHTTP.Add(float64(accepted))
	if len(failed) == len(items) {
		in.unavailable(ctx, failed)
		return
	}
	if len(failed) > 0 {
		in.retryLater(ctx, len(failed))
	}
	data := batchData{Accepted: accepted, Rejected: len(items) - accepted, Results: results}
	switch {
	case accepted == len(items):
		writeJSON(ctx, fasthttp.StatusAccepted, okEnvelope{Success: true, Data: data})
	case accepted > 0:
		writeJSON(ctx, fasthttp.StatusMultiStatus, okEnvelope{Success: false, Data: data})
	default:
		status, code := fasthttp.StatusForbidden, "forbidden"
		var details []schemas.FieldIssue
		for _, r := range results {
			if r.status != fasthttp.StatusForbidden {
				status, code = fasthttp.StatusBadRequest, "validation_error"
			}
			if r.Error == nil {
				continue
			}
			if len(r.Error.Details) == 0 {
				details = append(details, schemas.FieldIssue{Field: fmt.Sprintf("events[%d]", r.Index), Issue: r.Error.Message})
			}
			for _, d := range r.Error.Details {
				f := fmt.Sprintf("events[%d]", r.Index)
				if d.Field != "" {
					f += "." + d.Field
				}
				details = append(details, schemas.FieldIssue{Field: f, Issue: d.Issue})
			}
		}
		writeError(ctx, status, code, fmt.Sprintf("none of the %d events was accepted: %s %s", len(items), details[0].Field, details[0].Issue), details...)
	}
}

// decodeBatch returns the raw events of a batch body {"events": [...]}.
func decodeBatch(body []byte) ([]json.RawMessage, *requestError) {
	if items, ok := schemas.SplitBatch(body); ok {
		return items, nil
	}
	obj, rerr := decodeObjectDepth(body, schemas.MaxJSONDepth+2, "events") // an event's depth counts from its own object
	if rerr != nil {
		return nil, rerr
	}
	raw, ok := obj["events"]
	if !ok || nullValue(raw) {
		return nil, invalid(schemas.FieldIssue{Field: "events", Issue: "is required: an array of 1 to 1000 events"})
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid(schemas.FieldIssue{Field: "events", Issue: "must be an array of events"})
	}
	if len(items) == 0 || len(items) > schemas.MaxBatchEvents {
		return nil, invalid(schemas.FieldIssue{Field: "events", Issue: fmt.Sprintf("must contain 1 to %d events, got %d", schemas.MaxBatchEvents, len(items))})
	}
	return items, nil
}
