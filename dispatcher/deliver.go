package dispatcher

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// lookupGrace is how long a task whose endpoint is not (yet) in the store
// waits for it, when the task is recent: the gateway may have created the
// endpoint an instant before the dispatcher's view has caught up.
const (
	lookupGrace  = 2 * time.Second
	recentTask   = 30 * time.Second
	lookupPeriod = 50 * time.Millisecond
)

// lookup reads the endpoint's current configuration at attempt time. A
// deleted or deactivated endpoint yields the error code recorded instead of
// sending; false means the partition is stopping.
func (d *Dispatcher) lookup(ctx context.Context, t *schemas.Task) (*endpoint.Entry, string, bool) {
	deadline := time.Now().Add(lookupGrace)
	for {
		ep, ok := d.store.Get(t.EndpointID)
		if ok && ep.AccountID == t.AccountID {
			if !ep.Active {
				return nil, schemas.ErrCodeEndpointInactive, true
			}
			return ep, "", true
		}
		if time.Since(t.AcceptedAt) > recentTask || time.Now().After(deadline) {
			return nil, schemas.ErrCodeEndpointDeleted, true
		}
		if !retry.Sleep(ctx, lookupPeriod) {
			return nil, "", false
		}
	}
}

// process makes the attempts of one task: one, and for a strict endpoint
// its in-place retries. ctx ends when the lane must stop at once; stopping
// when the partition is being released (a strict task's wait then gives up).
// It returns false when it gave the task up (it is delivered again later).
func (d *Dispatcher) process(ctx, stopping context.Context, e *entry) bool {
	t := e.task
	for {
		ep, code, ok := d.lookup(ctx, &t)
		if !ok {
			return false
		}
		now := time.Now()
		if code != "" {
			msg := "endpoint deleted at attempt time: not sent"
			if code == schemas.ErrCodeEndpointInactive {
				msg = "endpoint inactive at attempt time: not sent"
			}
			d.record(e, &t, schemas.OutcomeFailed, Result{ErrCode: code}, msg, now, nil)
			e.release()
			return true
		}
		if !d.acquire(ctx, ep) { // the endpoint's rate limit, then a concurrency slot (ratelimit.go)
			return false
		}
		if ctx.Err() != nil {
			<-d.sem
			return false
		}
		d.m.inFlight.Inc()
		now = time.Now()
		res := d.client.Deliver(ctx, Request{
			URL: ep.URL, Body: t.Body, EventType: t.EventType, DeliveryID: t.DeliveryID,
			Secrets: ep.SigningSecrets(now), Now: now, Headers: ep.DeliveryHeaders(),
		})
		d.m.inFlight.Dec()
		<-d.sem
		if res.OK() {
			d.m.latency.Observe(time.Since(t.AcceptedAt).Seconds())
			d.record(e, &t, schemas.OutcomeSuccess, res, "", now, nil)
			e.release()
			return true
		}
		errMsg := ""
		if res.Err != nil {
			errMsg = res.Err.Error()
		}
		if t.Attempt >= d.cfg.RetrySchedule.MaxAttempts() {
			d.record(e, &t, schemas.OutcomeFailed, res, errMsg, now, nil)
			dead := t
			dead.DueAt = time.Time{}
			d.handOff(e, &dead, d.cfg.Kafka.Topic(schemas.TopicDead))
			e.release()
			return true
		}
		wait, tier := d.cfg.RetrySchedule.next(t.Attempt, res.RetryAfter, d.cfg.RetryAfterMax)
		// Rounded up to the millisecond the due-at header carries, so the
		// next attempt is never early.
		due := time.Now().Add(wait + time.Millisecond - 1).Truncate(time.Millisecond)
		d.record(e, &t, schemas.OutcomeRetrying, res, errMsg, now, &due)
		if ep.Ordering != schemas.OrderingStrict {
			// Hand the task to its delay topic; the lane moves on.
			next := t
			next.Attempt++
			next.DueAt = due
			d.handOff(e, &next, d.cfg.Kafka.Topic(schemas.RetryTopics[tier]))
			e.release()
			return true
		}
		// Strict ordering: the task keeps its lane (and the endpoint's later
		// tasks wait behind it) until it succeeds or fails for good. Other
		// lanes are not affected.
		if !retry.Sleep(stopping, time.Until(due)) || ctx.Err() != nil {
			return false
		}
		t.Attempt++
	}
}

// record produces the attempt's record to <p>.attempts; e finishes only
// once the record is acknowledged.
func (d *Dispatcher) record(e *entry, t *schemas.Task, outcome string, res Result, errMsg string, at time.Time, next *time.Time) {
	d.m.attempts.WithLabelValues(outcome, res.ErrCode).Inc()
	a := schemas.Attempt{
		DeliveryID: t.DeliveryID, EventID: t.EventID, EventType: t.EventType,
		AccountID: t.AccountID, EndpointID: t.EndpointID, Attempt: t.Attempt,
		Outcome: outcome, HTTPStatus: res.Status, LatencyMS: res.Latency.Milliseconds(),
		ErrorCode: res.ErrCode, Error: errMsg, ResponseExcerpt: res.Excerpt,
		EventCreated: eventCreated(t.Body), AcceptedAt: t.AcceptedAt.UTC(), AttemptedAt: at.UTC(),
	}
	if next != nil {
		n := next.UTC()
		a.NextRetryAt = &n
	}
	d.writeAttempt(e, &a)
}

// handOff produces t to topic (a delay topic or <p>.dead); e finishes only
// once it is acknowledged.
func (d *Dispatcher) handOff(e *entry, t *schemas.Task, topic string) {
	m := t.Message(topic)
	d.write(d.handoffs, e, m)
}

// eventCreated reads "created" from a Payload body, which the router
// encodes as {"id":…,"type":…,"created":N,"data":…}: the field precedes
// "data", so only the head of the body is scanned. 0 if absent.
func eventCreated(body []byte) int64 {
	head := body
	if i := bytes.Index(head, []byte(`"data"`)); i >= 0 {
		head = head[:i]
	}
	i := bytes.Index(head, []byte(`"created":`))
	if i < 0 {
		return 0
	}
	rest := bytes.TrimLeft(head[i+len(`"created":`):], " ")
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '-') {
		j++
	}
	n, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n
}
