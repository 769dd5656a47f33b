package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/eventlog"
	"github.com/zaits/webhooks/internal/jobs"
	"github.com/zaits/webhooks/schemas"
)

// Recovery: resend one delivery, and the jobs that recover an endpoint's
// failed deliveries, replay the account's event log to it, or redrive its
// dead letters. A resend is written to <p>.deliveries here; a job is
// written to <p>.jobs and run by the router that owns the account's
// partition of <p>.events (gateway/router/jobs.go).

// Recovery limits.
const (
	// MaxJobRate bounds a job's requested rate (tasks per second); the
	// router runs its jobs together at most at -router.jobs-max-rate.
	MaxJobRate = 10000
	// MaxDeadLetters bounds one page of GET …/dead-letters.
	MaxDeadLetters = 100
	// deadScanRecords bounds the dead letters one request reads (of every
	// endpoint on the partition): a page may end early with a next cursor.
	deadScanRecords = 20000
)

// recovery is the gateway's part of recovery: the event log and dead
// letters it reads, the job store, and the writer of resent tasks.
type recovery struct {
	events *eventlog.Log
	dead   *eventlog.Log
	jobs   *jobs.Store
	tasks  *kafka.Writer
}

func (g *Gateway) initRecovery() {
	g.recovery = recovery{
		events: eventlog.New(g.cfg.Kafka),
		dead:   eventlog.Open(g.cfg.Kafka, schemas.TopicDead),
		jobs:   jobs.NewStore(g.cfg.Kafka, g.log.With("part", "jobs")),
		tasks:  g.cfg.Kafka.NewWriter(g.cfg.Kafka.Topic(schemas.TopicDeliveries), time.Millisecond),
	}
}

// recoverableEndpoint returns the account's endpoint of the path, or
// answers 404 (missing, another account's) or 409 (inactive: a recovery
// would be recorded "endpoint inactive" and not sent).
func (g *Gateway) recoverableEndpoint(ctx *fasthttp.RequestCtx, account string) (*endpoint.Entry, bool) {
	id := pathID(ctx)
	e, ok := g.store.GetForAccount(account, id)
	if !ok {
		notFound(ctx, id)
		return nil, false
	}
	if !e.Active {
		why := "the endpoint is inactive"
		if e.DisabledReason != "" {
			why = "the endpoint was disabled (" + e.DisabledReason + ")"
		}
		writeError(ctx, fasthttp.StatusConflict, "endpoint_inactive", why+": activate it first with PUT {\"active\": true}, then recover")
		return nil, false
	}
	return e, true
}

type resentView struct {
	DeliveryID string `json:"delivery_id"`
	EndpointID string `json:"endpoint_id"`
	EventID    string `json:"event_id"`
	// Attempt is the number the resend's first attempt gets in the history.
	Attempt int    `json:"attempt"`
	Status  string `json:"status"` // "queued"
}

// resendDelivery: POST /v1/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id}/resend.
// A new run of the same task — same delivery id, same body — through the
// dispatcher (ordering, signing, address guard, retries), recorded as the
// delivery's next attempts.
func (g *Gateway) resendDelivery(ctx *fasthttp.RequestCtx, account string) {
	e, ok := g.recoverableEndpoint(ctx, account)
	if !ok {
		return
	}
	if len(ctx.PostBody()) > 0 {
		invalid(schemas.FieldIssue{Field: "body", Issue: "must be empty"}).write(ctx)
		return
	}
	did, ok := g.deliveryParam(ctx)
	if !ok {
		return
	}
	qctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	o, found, err := g.history.Origin(qctx, account, e.ID, did)
	switch {
	case err != nil:
		g.historyUnavailable(ctx, err)
		return
	case !found:
		writeError(ctx, fasthttp.StatusNotFound, "delivery_not_found", "no delivery "+did+" for this endpoint")
		return
	case o.Test:
		writeError(ctx, fasthttp.StatusUnprocessableEntity, "not_resendable", "a test delivery has no event in the event log; send a new one with POST …/test")
		return
	case o.EventOffset < 0:
		g.gone(ctx, "the delivery was recorded before event positions were kept; it cannot be resent (replay its time range instead)")
		return
	}
	rec, err := g.recovery.events.At(qctx, o.EventPartition, o.EventOffset)
	if errors.Is(err, eventlog.ErrGone) {
		g.gone(ctx, fmt.Sprintf("the delivery's event is no longer in the event log (it keeps events %s)", g.cfg.Kafka.Retention[schemas.TopicEvents]))
		return
	}
	if err != nil {
		g.log.Warn("resend: reading the event log failed", "delivery", did, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the event log is unavailable right now; retry shortly")
		return
	}
	ev, reason, _ := g.recovery.events.Decode(&rec)
	if reason != "" || ev.ID != o.EventID {
		g.gone(ctx, "the delivery's event is no longer in the event log")
		return
	}
	t := eventlog.Task(&ev, schemas.EncodePayload(&ev), &rec, e.ID, schemas.TriggerResend, o.Attempts)
	if err := g.recovery.tasks.WriteMessages(qctx, t.Message("")); err != nil {
		g.log.Warn("resend: writing the task failed", "delivery", did, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "Kafka did not acknowledge the resend; retry shortly (a resend that did land is one more attempt with the same delivery id)")
		return
	}
	writeData(ctx, fasthttp.StatusAccepted, resentView{DeliveryID: did, EndpointID: e.ID, EventID: ev.ID, Attempt: t.HistoryAttempt(), Status: "queued"})
}

// gone answers 410 Gone with why.
func (g *Gateway) gone(ctx *fasthttp.RequestCtx, why string) {
	writeError(ctx, fasthttp.StatusGone, "gone", why)
}

// jobView is a job as the API shows it.
type jobView struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	EndpointID string            `json:"endpoint_id"`
	Status     string            `json:"status"`
	Since      time.Time         `json:"since"`
	Until      *time.Time        `json:"until"`
	EventTypes []string          `json:"event_types"`
	Rate       *int              `json:"rate"`
	Counts     schemas.JobCounts `json:"counts"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	Error      *string           `json:"error"`
	// CancelRequested is true once a cancellation was asked for and the job
	// has not ended yet.
	CancelRequested bool `json:"cancel_requested"`
}

func (g *Gateway) jobViewOf(j schemas.Job) jobView {
	v := jobView{ID: j.ID, Type: j.Type, EndpointID: j.EndpointID, Status: j.Status, Since: j.Since.UTC(), Until: j.Until,
		EventTypes: j.EventTypes, Counts: j.Counts, CreatedAt: j.CreatedAt.UTC(), StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		CancelRequested: !j.Finished() && g.recovery.jobs.Cancelled(j.ID)}
	if v.EventTypes == nil {
		v.EventTypes = []string{}
	}
	if j.Rate > 0 {
		r := j.Rate
		v.Rate = &r
	}
	if j.Error != "" {
		msg := j.Error
		v.Error = &msg
	}
	return v
}

// jobRequest is the body of recover, replay and dead-letter replay.
type jobRequest struct {
	since      time.Time
	until      *time.Time
	eventTypes []string
	rate       int
}

// decodeJob decodes and checks a job request of typ: since (required
// unless sinceOptional), until, and for a replay event_types; rate for all.
func decodeJob(body []byte, typ string, now time.Time) (jobRequest, *requestError) {
	var req jobRequest
	allowed := []string{"since", "until", "rate"}
	if typ == schemas.JobReplay {
		allowed = append(allowed, "event_types")
	}
	if len(body) == 0 && typ == schemas.JobRedrive {
		body = []byte("{}")
	}
	obj, rerr := decodeObject(body, allowed...)
	if rerr != nil {
		return req, rerr
	}
	var issues []schemas.FieldIssue
	timeField := func(name string) *time.Time {
		var s string
		if !field(obj, name, "an RFC 3339 time such as 2026-12-01T10:00:00Z", &s, &issues) {
			return nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			issues = append(issues, schemas.FieldIssue{Field: name, Issue: "must be an RFC 3339 time such as 2026-12-01T10:00:00Z"})
			return nil
		}
		t = t.UTC()
		return &t
	}
	if s := timeField("since"); s != nil {
		req.since = *s
	} else if typ != schemas.JobRedrive && !hasIssue(issues, "since") {
		issues = append(issues, schemas.FieldIssue{Field: "since", Issue: "is required (an RFC 3339 time)"})
	}
	req.until = timeField("until")
	if req.until != nil && !req.until.After(req.since) {
		issues = append(issues, schemas.FieldIssue{Field: "until", Issue: "must be after since"})
	}
	if req.until != nil && req.until.After(now.Add(time.Minute)) {
		issues = append(issues, schemas.FieldIssue{Field: "until", Issue: "must not be in the future"})
	}
	if !req.since.IsZero() && req.since.After(now) {
		issues = append(issues, schemas.FieldIssue{Field: "since", Issue: "must not be in the future"})
	}
	if field(obj, "rate", "a whole number", &req.rate, &issues) && (req.rate < 1 || req.rate > MaxJobRate) {
		issues = append(issues, schemas.FieldIssue{Field: "rate", Issue: fmt.Sprintf("must be 1 to %d deliveries per second", MaxJobRate)})
	}
	if field(obj, "event_types", "an array of event types", &req.eventTypes, &issues) {
		issues = append(issues, checkEventTypes(req.eventTypes)...)
	}
	if len(issues) > 0 {
		return req, invalid(issues...)
	}
	return req, nil
}

func hasIssue(issues []schemas.FieldIssue, field string) bool {
	for _, is := range issues {
		if is.Field == field {
			return true
		}
	}
	return false
}

// checkEventTypes validates a replay's event_types: like an endpoint's
// subscriptions, but under their own field name.
func checkEventTypes(types []string) []schemas.FieldIssue {
	issues := checkEvents(types)
	for i := range issues {
		issues[i].Field = "event_types" + issues[i].Field[len("events"):]
	}
	return issues
}

// createJob validates a job request of typ for the path's endpoint and
// writes it queued; the answer is 202 with the job.
func (g *Gateway) createJob(ctx *fasthttp.RequestCtx, account, typ string) {
	e, ok := g.recoverableEndpoint(ctx, account)
	if !ok {
		return
	}
	if rerr := checkBody(ctx); rerr != nil {
		rerr.write(ctx)
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	req, rerr := decodeJob(ctx.PostBody(), typ, now)
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	// The window must lie within what is kept: the delivery log for a
	// recover, the event log for a replay, the dead letters for a redrive.
	var keep time.Duration
	var what string
	switch typ {
	case schemas.JobRecover:
		if g.history == nil {
			g.historyUnavailable(ctx, nil)
			return
		}
		keep, what = g.cfg.History.Retention, "the delivery log keeps deliveries"
		if req.until == nil {
			req.until = &now // the failures up to now, not those still to come
		}
	case schemas.JobReplay:
		keep, what = g.cfg.Kafka.Retention[schemas.TopicEvents], "the event log keeps events"
	case schemas.JobRedrive:
		keep, what = g.cfg.Kafka.Retention[schemas.TopicDead], "dead letters are kept"
		if req.since.IsZero() {
			req.since = now.Add(-keep)
		}
	}
	if oldest := now.Add(-keep); req.since.Before(oldest) {
		writeError(ctx, fasthttp.StatusUnprocessableEntity, "outside_retention",
			fmt.Sprintf("%s for %s: since must be at or after %s", what, keep, oldest.Truncate(time.Second).Format(time.RFC3339)),
			schemas.FieldIssue{Field: "since", Issue: fmt.Sprintf("is before the retention (%s) began", keep)})
		return
	}
	job := schemas.Job{ID: jobs.NewID(), Type: typ, AccountID: account, EndpointID: e.ID, Status: schemas.JobQueued,
		Since: req.since, Until: req.until, EventTypes: req.eventTypes, Rate: req.rate, CreatedAt: now}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := g.recovery.jobs.Put(wctx, job); err != nil {
		g.log.Error("job not written", "endpoint", e.ID, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the job store is unavailable; retry shortly")
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, "/v1/webhooks/endpoints/"+e.ID+"/jobs/"+job.ID)
	writeData(ctx, fasthttp.StatusAccepted, g.jobViewOf(job))
}

// recoverDeliveries: POST /v1/webhooks/endpoints/{endpoint_id}/recover.
func (g *Gateway) recoverDeliveries(ctx *fasthttp.RequestCtx, account string) {
	g.createJob(ctx, account, schemas.JobRecover)
}

// replayEvents: POST /v1/webhooks/endpoints/{endpoint_id}/replay.
func (g *Gateway) replayEvents(ctx *fasthttp.RequestCtx, account string) {
	g.createJob(ctx, account, schemas.JobReplay)
}

// redriveDeadLetters: POST /v1/webhooks/endpoints/{endpoint_id}/dead-letters/replay.
func (g *Gateway) redriveDeadLetters(ctx *fasthttp.RequestCtx, account string) {
	g.createJob(ctx, account, schemas.JobRedrive)
}

// endpointJob returns the path's job of the account's endpoint, or answers
// 404 (another account's job answers exactly like a missing one).
func (g *Gateway) endpointJob(ctx *fasthttp.RequestCtx, account string) (schemas.Job, bool) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return schemas.Job{}, false
	}
	jid, _ := ctx.UserValue("job_id").(string)
	j, ok := g.recovery.jobs.Get(jid)
	if !ok || j.AccountID != account || j.EndpointID != id {
		writeError(ctx, fasthttp.StatusNotFound, "job_not_found", "no job "+schemas.Clip(jid, 64)+" for this endpoint")
		return schemas.Job{}, false
	}
	return j, true
}

// getJob: GET /v1/webhooks/endpoints/{endpoint_id}/jobs/{job_id}.
func (g *Gateway) getJob(ctx *fasthttp.RequestCtx, account string) {
	if j, ok := g.endpointJob(ctx, account); ok {
		writeData(ctx, fasthttp.StatusOK, g.jobViewOf(j))
	}
}

// cancelJob: POST /v1/webhooks/endpoints/{endpoint_id}/jobs/{job_id}/cancel.
// 202: the job stops at its next checkpoint (about a second) and becomes
// cancelled; 409 when it has ended already.
func (g *Gateway) cancelJob(ctx *fasthttp.RequestCtx, account string) {
	j, ok := g.endpointJob(ctx, account)
	if !ok {
		return
	}
	if j.Finished() {
		writeError(ctx, fasthttp.StatusConflict, "job_finished", "the job is "+j.Status+" already")
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := g.recovery.jobs.Cancel(wctx, j.ID); err != nil {
		g.log.Error("job cancellation not written", "job", j.ID, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the job store is unavailable; retry shortly")
		return
	}
	writeData(ctx, fasthttp.StatusAccepted, g.jobViewOf(j))
}

// listJobs: GET /v1/webhooks/endpoints/{endpoint_id}/jobs?page=&per_page=, newest first.
func (g *Gateway) listJobs(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return
	}
	var issues []schemas.FieldIssue
	pg := parsePage(ctx.QueryArgs(), &issues)
	if len(issues) > 0 {
		invalid(issues...).write(ctx)
		return
	}
	all := g.recovery.jobs.List(account, id)
	lo, hi := pg.bounds(len(all))
	items := make([]jobView, 0, hi-lo)
	for _, j := range all[lo:hi] {
		items = append(items, g.jobViewOf(j))
	}
	writeJSON(ctx, fasthttp.StatusOK, listEnvelope{Success: true, Data: items,
		Pagination: pagination{Page: pg.page, PerPage: pg.perPage, Total: len(all)}})
}

// deadLetterView is one dead letter: a delivery whose run of the retry
// schedule failed every attempt.
type deadLetterView struct {
	DeliveryID string    `json:"delivery_id"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	Attempts   int       `json:"attempts"`
	CreatedAt  time.Time `json:"created_at"`
	DeadAt     time.Time `json:"dead_at"`
}

type cursorEnvelope struct {
	Success bool `json:"success"`
	Data    any  `json:"data"`
	// NextCursor continues the list (?cursor=); null at the end.
	NextCursor *string `json:"next_cursor"`
}

// listDeadLetters: GET /v1/webhooks/endpoints/{endpoint_id}/dead-letters
// ?since=&until=&limit=&cursor=, oldest first.
func (g *Gateway) listDeadLetters(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return
	}
	args := ctx.QueryArgs()
	var issues []schemas.FieldIssue
	timeArg := func(name string) time.Time {
		if !args.Has(name) {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, string(args.Peek(name)))
		if err != nil {
			issues = append(issues, schemas.FieldIssue{Field: name, Issue: "must be an RFC 3339 time such as 2026-12-01T10:00:00Z"})
		}
		return t
	}
	since, until := timeArg("since"), timeArg("until")
	limit := 25
	if args.Has("limit") {
		n, err := strconv.Atoi(string(args.Peek("limit")))
		if err != nil || n < 1 || n > MaxDeadLetters {
			issues = append(issues, schemas.FieldIssue{Field: "limit", Issue: fmt.Sprintf("must be a whole number from 1 to %d", MaxDeadLetters)})
		}
		limit = n
	}
	cursor := int64(-1)
	if args.Has("cursor") {
		n, err := strconv.ParseInt(string(args.Peek("cursor")), 10, 64)
		if err != nil || n < 0 {
			issues = append(issues, schemas.FieldIssue{Field: "cursor", Issue: "must be a next_cursor this list returned"})
		}
		cursor = n
	}
	if len(issues) > 0 {
		invalid(issues...).write(ctx)
		return
	}
	qctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	items, next, err := g.deadLetters(qctx, account, id, since, until, cursor, limit)
	if err != nil {
		g.log.Warn("dead letters: reading failed", "endpoint", id, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the dead letters cannot be read right now; retry shortly")
		return
	}
	env := cursorEnvelope{Success: true, Data: items}
	if next >= 0 {
		s := strconv.FormatInt(next, 10)
		env.NextCursor = &s
	}
	writeJSON(ctx, fasthttp.StatusOK, env)
}

// deadLetters reads the endpoint's dead letters written in [since, until)
// (zero: unbounded) from cursor (or since) on: at most limit of them, and
// the offset to continue from, -1 at the end.
func (g *Gateway) deadLetters(ctx context.Context, account, endpointID string, since, until time.Time, cursor int64, limit int) ([]deadLetterView, int64, error) {
	dead := g.recovery.dead
	p := dead.PartitionOf(endpointID)
	offset := cursor
	if cursor < 0 {
		var err error
		if offset, err = dead.StartAt(ctx, p, since); err != nil {
			return nil, 0, err
		}
	}
	items := []deadLetterView{}
	next, err := dead.Scan(ctx, p, offset, until, deadScanRecords, func(rec *eventlog.Record) bool {
		t, err := schemas.ParseTask(rec.Message(dead.Topic()))
		if err == nil && t.EndpointID == endpointID && t.AccountID == account {
			items = append(items, deadLetterView{DeliveryID: t.DeliveryID, EventID: t.EventID, EventType: t.EventType,
				Attempts: t.HistoryAttempt(), CreatedAt: t.AcceptedAt.UTC().Truncate(time.Second), DeadAt: rec.Time.UTC().Truncate(time.Second)})
		}
		return len(items) < limit
	})
	return items, next, err
}
