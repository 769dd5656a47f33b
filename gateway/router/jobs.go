package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/zaits/webhooks/internal/eventlog"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// Recovery jobs (recover, replay, redrive) run in the router that owns the
// account's partition of <p>.events: a job follows its partition through
// rebalances like the live events do. Each job writes its tasks to
// <p>.deliveries (acks=all) in batches at its rate, within the router's
// limit for all its jobs together, and records its progress in <p>.jobs
// after the tasks before the cursor were acknowledged. A job taken over
// after a crash resumes at its last recorded cursor: the tasks written
// after it are written again, with the same delivery ids (at-least-once).

const (
	// jobBatch bounds the tasks of one write (and of one rate wait).
	jobBatch = 200
	// checkpointEvery is how often a running job records its progress.
	checkpointEvery = time.Second
)

// errCancelled ends a job whose cancellation was asked for.
var errCancelled = errors.New("cancelled")

// runJobs runs the unfinished jobs of the accounts of events partition p
// until ctx ends (the generation ended): then every job records where it
// stopped before runJobs returns.
func (r *Router) runJobs(ctx context.Context, p int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]bool{}
	var mu sync.Mutex
	for {
		changed := r.jobs.Changed()
		for _, j := range r.jobs.Unfinished(func(j *schemas.Job) bool { return r.evlog.PartitionOf(j.AccountID) == p }) {
			mu.Lock()
			busy := running[j.ID]
			running[j.ID] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.runJob(ctx, j)
				mu.Lock()
				delete(running, j.ID)
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(5 * time.Second): // a job that stopped on an error starts again
		}
	}
}

// jobRun is one run of a job: its state, its rate and its last checkpoint.
type jobRun struct {
	r     *Router
	job   schemas.Job
	lim   *rate.Limiter
	saved time.Time
}

// runJob runs job from its cursor until it finishes, is cancelled or ctx ends.
func (r *Router) runJob(ctx context.Context, job schemas.Job) {
	per := job.Rate
	if per <= 0 {
		per = r.cfg.JobRate
	}
	per = min(per, r.cfg.JobsMaxRate)
	run := &jobRun{r: r, job: job, lim: rate.NewLimiter(rate.Limit(per), min(per, jobBatch))}
	if run.job.Status == schemas.JobQueued {
		now := time.Now().UTC().Truncate(time.Second)
		run.job.Status, run.job.StartedAt = schemas.JobRunning, &now
		if !run.checkpoint(ctx) {
			return
		}
	}
	r.log.Info("job running", "job", job.ID, "type", job.Type, "endpoint", job.EndpointID, "rate", per)
	var err error
	switch {
	case r.jobs.Cancelled(job.ID):
		err = errCancelled
	case job.Type == schemas.JobReplay:
		err = run.replay(ctx)
	case job.Type == schemas.JobRecover:
		err = run.recover(ctx)
	case job.Type == schemas.JobRedrive:
		err = run.redrive(ctx)
	default:
		err = fmt.Errorf("unknown job type %q", job.Type)
	}
	if ctx.Err() != nil {
		// Where this owner stopped, so the next one resumes there; bounded,
		// since the generation waits for it (without it, the next owner
		// resumes at the previous record and sends that much again).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		run.checkpoint(cctx)
		cancel()
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	run.job.FinishedAt = &now
	switch {
	case errors.Is(err, errCancelled):
		run.job.Status, run.job.Error = schemas.JobCancelled, ""
	case err != nil:
		run.job.Status, run.job.Error = schemas.JobFailed, err.Error()
	default:
		run.job.Status, run.job.Error = schemas.JobCompleted, ""
	}
	r.m.jobs.WithLabelValues(job.Type, run.job.Status).Inc()
	r.log.Info("job finished", "job", job.ID, "type", job.Type, "status", run.job.Status, "sent", run.job.Counts.Sent, "skipped", run.job.Counts.Skipped, "err", err)
	run.checkpoint(ctx)
}

// checkpoint records the job's state, retrying while Kafka refuses; false
// when ctx ended first.
func (run *jobRun) checkpoint(ctx context.Context) bool {
	var backoff retry.Backoff
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := run.r.jobs.Put(wctx, run.job)
		cancel()
		if err == nil {
			run.saved = time.Now()
			return true
		}
		run.r.log.Warn("job: recording progress failed, retrying", "job", run.job.ID, "err", err)
		if !backoff.Wait(ctx) {
			return false
		}
	}
}

// progress records the job's state once a second, and reports a
// cancellation.
func (run *jobRun) progress(ctx context.Context) error {
	if run.r.jobs.Cancelled(run.job.ID) {
		return errCancelled
	}
	if time.Since(run.saved) >= checkpointEvery && !run.checkpoint(ctx) {
		return ctx.Err()
	}
	return nil
}

// send writes tasks to <p>.deliveries at the job's rate within the
// router's, and counts them.
func (run *jobRun) send(ctx context.Context, tasks []schemas.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	if err := waitN(ctx, run.lim, len(tasks)); err != nil {
		return err
	}
	if err := waitN(ctx, run.r.jobLimit, len(tasks)); err != nil {
		return err
	}
	msgs := make([]kafka.Message, len(tasks))
	for i := range tasks {
		msgs[i] = tasks[i].Message(run.r.deliveries)
	}
	if err := run.r.write(ctx, msgs); err != nil {
		return err
	}
	run.job.Counts.Sent += int64(len(tasks))
	run.r.m.jobTasks.WithLabelValues(run.job.Type).Add(float64(len(tasks)))
	return nil
}

// waitOn notes in the job what it waits for and waits a backoff step;
// the error when ctx ended.
func (run *jobRun) waitOn(ctx context.Context, backoff *retry.Backoff, what string, err error) error {
	run.job.Error = "waiting: " + what + ": " + err.Error()
	run.r.log.Warn("job waiting", "job", run.job.ID, "on", what, "err", err)
	if err := run.progress(ctx); err != nil {
		return err
	}
	if !backoff.Wait(ctx) {
		return ctx.Err()
	}
	return nil
}

// endpoint is the job's endpoint as it is now; an error ends the job when
// it was deleted (a disabled one still gets its tasks: they are recorded
// endpoint_inactive, not sent).
func (run *jobRun) endpoint() (subscriptions []string, err error) {
	e, ok := run.r.store.Get(run.job.EndpointID)
	if !ok || e.AccountID != run.job.AccountID {
		return nil, errors.New("the endpoint was deleted")
	}
	return e.Events, nil
}

// replay delivers the account's events of [Since, Until) on its partition
// of <p>.events that match the job's types (or the endpoint's
// subscriptions), in event order, as the live router would have: the same
// delivery ids and bodies, attempts numbered after those recorded.
func (run *jobRun) replay(ctx context.Context) error {
	r, job := run.r, &run.job
	if r.history == nil {
		return errors.New("the delivery log is not configured on this router (clickhouse.* flags)")
	}
	var backoff retry.Backoff
	for !job.Cursor.Bounded {
		if err := run.bounds(ctx, r.evlog, job.AccountID); err == nil {
			break
		} else if err := run.waitOn(ctx, &backoff, "the event log", err); err != nil {
			return err
		}
	}
	for job.Cursor.Offset < job.Cursor.End {
		subs, err := run.endpoint()
		if err != nil {
			return err
		}
		if len(job.EventTypes) > 0 {
			subs = job.EventTypes
		}
		recs, err := r.evlog.Fetch(ctx, job.Cursor.Partition, job.Cursor.Offset)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			first, _, berr := r.evlog.Bounds(ctx, job.Cursor.Partition)
			if berr == nil && first > job.Cursor.Offset {
				job.Counts.Skipped += first - job.Cursor.Offset // deleted by retention meanwhile
				job.Cursor.Offset = first
				continue
			}
		}
		if err != nil {
			if err := run.waitOn(ctx, &backoff, "the event log", err); err != nil {
				return err
			}
			continue
		}
		backoff.Reset()
		job.Error = ""
		var events []schemas.Event
		var from []*eventlog.Record
		next := job.Cursor.Offset
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= job.Cursor.End || len(events) == jobBatch {
				break
			}
			next = rec.Offset + 1
			job.Counts.Scanned++
			ev, reason, _ := r.evlog.Decode(rec)
			if reason != "" || ev.AccountID != job.AccountID || rec.Time.Before(job.Since) || !matchesAny(subs, ev.Type) {
				continue
			}
			events, from = append(events, ev), append(from, rec)
		}
		if len(recs) == 0 {
			next = job.Cursor.Offset // nothing more yet below End (control records): ask again
		}
		if err := run.deliverEvents(ctx, events, from); err != nil {
			return err
		}
		job.Cursor.Offset = max(next, job.Cursor.Offset)
		if err := run.progress(ctx); err != nil {
			return err
		}
	}
	return nil
}

// bounds fixes where a replay or redrive reads: key's partition of log,
// from the first record at or after Since up to the one before Until (or
// the end when the job starts).
func (run *jobRun) bounds(ctx context.Context, log *eventlog.Log, key string) error {
	job := &run.job
	p := log.PartitionOf(key)
	first, end, err := log.Bounds(ctx, p)
	if err != nil {
		return err
	}
	start, err := log.OffsetAt(ctx, p, job.Since)
	if err != nil {
		return err
	}
	if start < 0 {
		start = end
	}
	if job.Until != nil {
		if u, err := log.OffsetAt(ctx, p, *job.Until); err != nil {
			return err
		} else if u >= 0 {
			end = u
		}
	}
	job.Cursor = schemas.JobCursor{Partition: p, Offset: min(max(start, first), end), End: end, Bounded: true}
	return nil
}

// deliverEvents sends the tasks of events (read from recs) to the job's
// endpoint, numbering their attempts after those the delivery log has.
func (run *jobRun) deliverEvents(ctx context.Context, events []schemas.Event, recs []*eventlog.Record) error {
	if len(events) == 0 {
		return nil
	}
	job := &run.job
	ids := make([]string, len(events))
	from, to := recs[0].Time, recs[0].Time
	for i := range events {
		ids[i] = schemas.DeliveryID(events[i].ID, job.EndpointID)
		from, to = minTime(from, recs[i].Time), maxTime(to, recs[i].Time)
	}
	var backoff retry.Backoff
	var base map[string]int
	for {
		var err error
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		base, err = run.r.history.MaxAttempts(qctx, job.AccountID, job.EndpointID, from.Add(-time.Second), to.Add(time.Second), ids)
		cancel()
		if err == nil {
			break
		}
		if err := run.waitOn(ctx, &backoff, "the delivery log", err); err != nil {
			return err
		}
	}
	job.Error = ""
	tasks := make([]schemas.Task, len(events))
	for i := range events {
		tasks[i] = eventlog.Task(&events[i], schemas.EncodePayload(&events[i]), recs[i], job.EndpointID, schemas.TriggerReplay, base[ids[i]])
	}
	job.Counts.Matched += int64(len(tasks))
	return run.send(ctx, tasks)
}

// recover re-sends the endpoint's failed deliveries accepted in
// [Since, Until), oldest first, each as a new run of the same delivery
// (same id and body, attempts numbered after those recorded).
func (run *jobRun) recover(ctx context.Context) error {
	r, job := run.r, &run.job
	if r.history == nil {
		return errors.New("the delivery log is not configured on this router (clickhouse.* flags)")
	}
	until := job.CreatedAt
	if job.Until != nil {
		until = *job.Until
	}
	var backoff retry.Backoff
	cache := &recordCache{log: r.evlog}
page:
	for {
		if _, err := run.endpoint(); err != nil {
			return err
		}
		after, afterOffset := time.Time{}, int64(-2) // before every offset, -1 (unknown) included
		if job.Cursor.AcceptedAt != nil {
			after, afterOffset = *job.Cursor.AcceptedAt, job.Cursor.Offset
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		page, err := r.history.FailedPage(qctx, job.AccountID, job.EndpointID, job.Since, until, after, afterOffset, job.Cursor.DeliveryID, jobBatch)
		cancel()
		if err != nil {
			if err := run.waitOn(ctx, &backoff, "the delivery log", err); err != nil {
				return err
			}
			continue
		}
		job.Error = ""
		if len(page) == 0 {
			return nil
		}
		var tasks []schemas.Task
		for _, d := range page {
			job.Counts.Scanned++
			job.Counts.Matched++
			rec, err := cache.at(ctx, d.EventPartition, d.EventOffset)
			if errors.Is(err, eventlog.ErrGone) || d.EventOffset < 0 {
				job.Counts.Skipped++
				continue
			}
			if err != nil {
				if err := run.waitOn(ctx, &backoff, "the event log", err); err != nil {
					return err
				}
				continue page // from the cursor again: nothing of this page was sent
			}
			ev, reason, _ := r.evlog.Decode(rec)
			if reason != "" || ev.ID != d.EventID {
				job.Counts.Skipped++
				continue
			}
			tasks = append(tasks, eventlog.Task(&ev, schemas.EncodePayload(&ev), rec, job.EndpointID, schemas.TriggerRecover, d.Attempts))
		}
		if err := run.send(ctx, tasks); err != nil {
			return err
		}
		last := page[len(page)-1]
		job.Cursor.AcceptedAt, job.Cursor.Offset, job.Cursor.DeliveryID = &last.AcceptedAt, last.EventOffset, last.DeliveryID
		if err := run.progress(ctx); err != nil {
			return err
		}
	}
}

// recordCache serves records of <p>.events by position from the last
// fetch, which holds the records after the one asked for: a recover reads
// an endpoint's failed deliveries in acceptance order, so one fetch of a
// partition covers many of them.
type recordCache struct {
	log  *eventlog.Log
	p    int
	recs []eventlog.Record
}

func (c *recordCache) at(ctx context.Context, p int, offset int64) (*eventlog.Record, error) {
	if offset < 0 {
		return nil, eventlog.ErrGone
	}
	if p == c.p && len(c.recs) > 0 && offset >= c.recs[0].Offset && offset <= c.recs[len(c.recs)-1].Offset {
		for i := range c.recs {
			if c.recs[i].Offset == offset {
				return &c.recs[i], nil
			}
		}
		return nil, eventlog.ErrGone // a gap: not a record of the log
	}
	recs, err := c.log.From(ctx, p, offset)
	if err != nil {
		return nil, err
	}
	c.p, c.recs = p, recs
	return &c.recs[0], nil
}

// redrive re-delivers the endpoint's dead letters written in
// [Since, Until): each task starts a new run of the retry schedule after
// the attempts it had.
func (run *jobRun) redrive(ctx context.Context) error {
	r, job := run.r, &run.job
	dead := eventlog.Open(r.cfg.Kafka, schemas.TopicDead)
	var backoff retry.Backoff
	for !job.Cursor.Bounded {
		if err := run.bounds(ctx, dead, job.EndpointID); err == nil {
			break
		} else if err := run.waitOn(ctx, &backoff, "the dead letters", err); err != nil {
			return err
		}
	}
	for job.Cursor.Offset < job.Cursor.End {
		if _, err := run.endpoint(); err != nil {
			return err
		}
		recs, err := dead.Fetch(ctx, job.Cursor.Partition, job.Cursor.Offset)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			first, _, berr := dead.Bounds(ctx, job.Cursor.Partition)
			if berr == nil && first > job.Cursor.Offset {
				job.Counts.Skipped += first - job.Cursor.Offset
				job.Cursor.Offset = first
				continue
			}
		}
		if err != nil {
			if err := run.waitOn(ctx, &backoff, "the dead letters", err); err != nil {
				return err
			}
			continue
		}
		backoff.Reset()
		job.Error = ""
		var tasks []schemas.Task
		next := job.Cursor.Offset
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= job.Cursor.End || len(tasks) == jobBatch {
				break
			}
			next = rec.Offset + 1
			job.Counts.Scanned++
			t, err := schemas.ParseTask(rec.Message(dead.Topic()))
			if err != nil || t.EndpointID != job.EndpointID || t.AccountID != job.AccountID || rec.Time.Before(job.Since) {
				continue
			}
			job.Counts.Matched++
			t.AttemptBase, t.Attempt, t.Trigger, t.DueAt = t.HistoryAttempt(), 1, schemas.TriggerRedrive, time.Time{}
			tasks = append(tasks, t)
		}
		if err := run.send(ctx, tasks); err != nil {
			return err
		}
		job.Cursor.Offset = max(next, job.Cursor.Offset)
		if err := run.progress(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitN waits until lim allows n events, in steps of at most its burst.
func waitN(ctx context.Context, lim *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, lim.Burst())
		if err := lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// matchesAny reports whether a subscription of subs covers eventType.
func matchesAny(subs []string, eventType string) bool {
	for _, s := range subs {
		if schemas.Matches(s, eventType) {
			return true
		}
	}
	return false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
