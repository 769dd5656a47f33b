package dispatcher

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

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
//
// A task carries the position of <p>.endpoints its router's view had
// reached (Task.EndpointsAt): the view waits until it has applied as much
// (woken by each record; at most lookupGrace), so an endpoint change the
// routing saw — a reactivation, a new URL or secret — is seen here too, and
// an endpoint missing from a view that far along is gone. Without a
// position (older routers) a recent task's missing endpoint is looked for
// again until lookupGrace passes. When the view does not get there in time
// (<p>.endpoints unreadable) the attempt goes on with the view as it is,
// counted in zaits_dispatcher_stale_lookups_total, and until the view moves
// again no attempt waits for it (one wait, not one per task).
func (d *Dispatcher) lookup(ctx context.Context, t *schemas.Task) (*endpoint.Entry, string, bool) {
	deadline := time.Now().Add(lookupGrace)
	caughtUp := false
	if len(t.EndpointsAt) > 0 {
		if caughtUp = d.store.Reached(t.EndpointsAt); !caughtUp {
			caughtUp = d.awaitView(ctx, t, deadline)
			if ctx.Err() != nil {
				return nil, "", false
			}
			if !caughtUp {
				d.m.staleViews.Inc()
			}
		}
	}
	for {
		ep, ok := d.store.Get(t.EndpointID)
		if ok && ep.AccountID == t.AccountID {
			if !ep.Active {
				return nil, schemas.ErrCodeEndpointInactive, true
			}
			return ep, "", true
		}
		if caughtUp || time.Since(t.AcceptedAt) > recentTask || time.Now().After(deadline) {
			return nil, schemas.ErrCodeEndpointDeleted, true
		}
		if !retry.Sleep(ctx, lookupPeriod) {
			return nil, "", false
		}
	}
}

// awaitView waits until the view reached t's position, until deadline,
// unless the view is stuck where an earlier wait ran out.
func (d *Dispatcher) awaitView(ctx context.Context, t *schemas.Task, deadline time.Time) bool {
	view := d.store.Applied()
	if stuck := d.stuck.Load(); stuck != nil && slices.Equal(*stuck, view) {
		return false
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := d.store.WaitApplied(wctx, t.EndpointsAt)
	if err == nil || ctx.Err() != nil {
		return err == nil
	}
	view = d.store.Applied()
	if old := d.stuck.Swap(&view); old == nil || !slices.Equal(*old, view) {
		d.log.Warn("dispatcher: the endpoint view did not reach the position a task was routed with; attempting with the view as it is until it moves",
			"endpoint", t.EndpointID, "delivery", t.DeliveryID, "view", view, "task_position", endpoint.Position(t.EndpointsAt), "err", err)
	}
	return false
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
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
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
			Secrets: ep.SigningSecrets(now), Now: now,
		})
		d.m.inFlight.Dec()
		<-d.sem
		if res.OK() {
			if t.Trigger == "" { // a resend or replay is not publish→receipt
				d.m.latency.Observe(time.Since(t.AcceptedAt).Seconds())
			}
			d.record(e, &t, schemas.OutcomeSuccess, res, "", now, nil)
			e.release()
			return true
		}
		errMsg := ""
		if res.Err != nil {
			errMsg = res.Err.Error()
		}
		gone := res.Status == fasthttp.StatusGone
		if gone {
			// 410 Gone is final: no more attempts, and the endpoint is
			// disabled (its account is told) before the attempt is recorded.
			if !d.disable(ctx, ep, schemas.DisabledGone, "the endpoint answered 410 Gone to delivery "+t.DeliveryID) {
				return false
			}
		}
		if gone || t.Attempt >= d.cfg.RetrySchedule.MaxAttempts() {
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

// disable disables ep for reason (and announces it), retrying while Kafka
// does not take the update; false when ctx ended first (the task is then
// delivered again, and answered 410 again).
func (d *Dispatcher) disable(ctx context.Context, ep *endpoint.Entry, reason, detail string) bool {
	var backoff retry.Backoff
	for {
		_, err := d.store.Disable(ctx, ep.ID, reason, detail, time.Now())
		if err == nil {
			return true
		}
		d.log.Warn("disabling an endpoint failed, retrying", "endpoint", ep.ID, "reason", reason, "err", err)
		if !backoff.Wait(ctx) {
			return false
		}
	}
}

// record produces the attempt's record to <p>.attempts; e finishes only
// once the record is acknowledged.
func (d *Dispatcher) record(e *entry, t *schemas.Task, outcome string, res Result, errMsg string, at time.Time, next *time.Time) {
	d.m.attempts.WithLabelValues(outcome, res.ErrCode).Inc()
	a := schemas.Attempt{
		DeliveryID: t.DeliveryID, EventID: t.EventID, EventType: t.EventType,
		AccountID: t.AccountID, EndpointID: t.EndpointID, Attempt: t.HistoryAttempt(),
		Trigger: t.Trigger, EventPartition: t.EventPartition, EventOffset: t.EventOffset,
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
