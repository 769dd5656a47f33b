package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/eventlog"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// maxBackoff bounds the pause between failed fetches and task writes: once
// the controller has fenced a dead broker its partitions have new leaders,
// found at the next try, and a longer pause only adds to the stall.
const maxBackoff = time.Second

// fetched is one fetch's records of a partition: the unit of routing,
// writing and committing.
type fetched struct {
	records []eventlog.Record

	// Causal routing: the end of <p>.endpoints read after the fetch, which
	// the endpoint view must reach before the batch is routed.
	fetchedAt time.Time
	end       *endpoint.EndOffsets // being read while the fetcher fetches on
}

// partition routes one partition from the assigned offset until ctx ends.
func (r *Router) partition(ctx context.Context, a kafka.PartitionAssignment, prog *progress) {
	p := a.ID
	label := strconv.Itoa(p)
	defer r.m.window.DeleteLabelValues(label)
	var next int64
	win := newDedupWindow(r.cfg.DedupWindow, r.cfg.DedupIDs)
	backoff := retry.Backoff{Max: maxBackoff}
	for {
		var err error
		if next, err = r.resolve(ctx, p, a.Offset); err == nil {
			err = r.rebuild(ctx, p, next, win)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("router: preparing partition", "partition", p, "err", err)
		if !retry.Sleep(ctx, backoff.Next()) {
			return
		}
	}
	r.log.Debug("router: partition ready", "partition", p, "offset", next, "dedup_ids", win.Len())
	prog.set(p, next)

	// A fetcher reads ahead while the previous batch is being written.
	batches := make(chan fetched, 1)
	fctx, cancel := context.WithCancel(ctx)
	var fetcher sync.WaitGroup
	fetcher.Add(1)
	go func() {
		defer fetcher.Done()
		defer close(batches)
		r.fetchLoop(fctx, p, next, batches)
	}()
	defer func() { cancel(); fetcher.Wait() }()

	var out []kafka.Message
	var subs []*endpoint.Entry
	var fe schemas.FilterEvent // the event as endpoint filters see it (filter.go)
	for b := range batches {
		out = out[:0]
		target, staleErr := r.awaitView(ctx, &b)
		if ctx.Err() != nil {
			return // not routed, not committed
		}
		var dup, routed, viaHTTP, tasks int
		for i := range b.records {
			rec := &b.records[i]
			ev, reason, why := r.evlog.Decode(rec)
			if reason != "" {
				out = append(out, r.quarantine(rec, why))
				r.m.quarantined.WithLabelValues(reason).Inc()
				continue
			}
			if win.Seen(ev.AccountID, ev.ID, rec.Time) {
				dup++
				continue
			}
			if fromHTTP(rec.Headers) {
				viaHTTP++
			}
			subs = r.store.Subscribed(subs[:0], ev.AccountID, ev.Type)
			subs = matching(subs, &ev, &fe)
			r.m.perEvent.Observe(float64(len(subs)))
			routed++
			if len(subs) == 0 {
				continue
			}
			body := schemas.EncodePayload(&ev)
			for _, e := range subs {
				t := eventlog.Task(&ev, body, rec, e.ID, "", 0)
				out = append(out, t.Message(r.deliveries))
			}
			tasks += len(subs)
		}
		// The view the batch was routed with, read after routing it: the
		// dispatcher's view reaches it before an attempt reads the endpoint.
		at := kafka.Header{Key: schemas.HeaderEndpointsAt, Value: schemas.AppendOffsets(nil, r.store.Applied())}
		for i := range out {
			if out[i].Topic == r.deliveries {
				out[i].Headers = append(out[i].Headers, at)
			}
		}
		if err := r.write(ctx, out); err != nil {
			return // ctx ended: this batch is not finished and not committed
		}
		last := b.records[len(b.records)-1].Offset
		if staleErr != nil {
			r.m.stale.Add(float64(routed))
			r.log.Error("router: routed events with an endpoint view that may be stale: an endpoint change answered just before them may not apply to them",
				"partition", p, "from", b.records[0].Offset, "to", last, "events", routed, "waited", time.Since(b.fetchedAt).Round(time.Millisecond),
				"view", r.store.Applied(), "target", target, "err", staleErr)
		}
		prog.set(p, last+1)
		r.m.fromHTTP.Add(float64(viaHTTP))
		r.m.fromKafka.Add(float64(routed - viaHTTP))
		r.m.tasks.Add(float64(tasks))
		r.m.duplicates.Add(float64(dup))
		r.m.window.WithLabelValues(label).Set(win.Age().Seconds())
	}
}

// awaitView waits until the endpoint view has applied every record of
// <p>.endpoints before the end offsets read after b was fetched, at most
// EndpointsWait from when its routing begins (not from the fetch: in a
// backlog a fetched batch waits behind the previous one's writes for
// longer than that, with its end offsets long known). Every endpoint write answered before b's
// events were accepted (or produced) lies before those offsets, so the
// view then routes them by it. In the common case the view is there
// already and this is a few atomic loads. It returns why the view could
// not be confirmed (the batch is then routed with the view as it is), or
// nil; ctx's end shows in ctx.Err().
func (r *Router) awaitView(ctx context.Context, b *fetched) (endpoint.Position, error) {
	start := time.Now()
	defer func() { r.m.viewWait.Observe(time.Since(start).Seconds()) }()
	deadline := start.Add(r.cfg.EndpointsWait)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var target endpoint.Position
	var err error
	ended := b.end.Done()
	select {
	case <-ended: // known already: the usual case, never lost to a ready deadline
	default:
		select {
		case <-ended:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("no answer from %s's leaders within %s", r.store.Topic(), r.cfg.EndpointsWait)
		}
	}
	if target, err = b.end.Result(); err != nil {
		target, err = r.endpointsEnd(ctx, deadline) // retried until the bound
	}
	if err != nil || r.store.Reached(target) {
		return target, err
	}
	// The end is known and lies ahead of the view: the records exist and
	// the view will get there (it lags, e.g. on a loaded cluster). Routing
	// now would lose the deliveries of an endpoint created just before
	// these events, so the batch is held longer — loudly — and routed with
	// the view as it is only after viewLagRounds bounds.
	err = r.store.WaitApplied(wctx, target)
	for round := 1; err != nil && ctx.Err() == nil && round < viewLagRounds; round++ {
		r.log.Warn("router: the endpoint view lags behind <p>.endpoints; holding the batch until it has caught up",
			"view", r.store.Applied(), "target", target, "waited", time.Since(start).Round(time.Millisecond))
		rctx, rcancel := context.WithTimeout(ctx, r.cfg.EndpointsWait)
		err = r.store.WaitApplied(rctx, target)
		rcancel()
	}
	return target, err
}

// viewLagRounds is how many -router.endpoints-wait bounds a batch waits
// for a view that lags behind end offsets it knows (1 minute by default),
// against one bound when the end offsets cannot be read at all.
const viewLagRounds = 12

// endpointsEnd reads the end offsets of <p>.endpoints, retrying until
// deadline.
func (r *Router) endpointsEnd(ctx context.Context, deadline time.Time) (endpoint.Position, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	backoff := retry.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	var failed error // the last failure that was not the deadline
	for {
		pos, err := r.store.Latest(ctx)
		if err == nil {
			return pos, nil
		}
		if ctx.Err() == nil {
			failed = err
		}
		if !backoff.Wait(ctx) {
			if failed != nil {
				return nil, failed
			}
			return nil, err
		}
	}
}

// write writes msgs with acks=all, retrying what failed until it succeeds
// or ctx ends. A batch is never skipped: a retry may repeat a task, never
// lose one, and per partition the order stays (the producer stops a
// partition at its first failure, so what is retried is a suffix per
// partition).
func (r *Router) write(ctx context.Context, msgs []kafka.Message) error {
	backoff := retry.Backoff{Max: maxBackoff}
	for len(msgs) > 0 {
		err := r.producer.Produce(ctx, msgs)
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
		r.m.retries.Inc()
		r.log.Warn("router: writing tasks failed, retrying", "messages", len(msgs), "err", err)
		if !retry.Sleep(ctx, backoff.Next()) {
			return ctx.Err()
		}
	}
	return nil
}

// quarantine is the <p>.events.invalid copy of rec: its key, value and
// headers, plus the reason and where it came from.
func (r *Router) quarantine(rec *eventlog.Record, why string) kafka.Message {
	h := append(rec.Headers[:len(rec.Headers):len(rec.Headers)],
		kafka.Header{Key: schemas.HeaderInvalidReason, Value: []byte(why)},
		kafka.Header{Key: "zaits-source", Value: fmt.Appendf(nil, "%s/%d/%d", r.events, rec.Partition, rec.Offset)})
	return kafka.Message{Topic: r.invalid, Key: rec.Key, Value: rec.Value, Headers: h, Time: rec.Time}
}

func fromHTTP(h []kafka.Header) bool {
	for _, x := range h {
		if x.Key == schemas.HeaderIngest {
			return true
		}
	}
	return false
}

// resolve turns the assigned offset (possibly FirstOffset) into an absolute one.
func (r *Router) resolve(ctx context.Context, p int, offset int64) (int64, error) {
	if offset >= 0 {
		return offset, nil
	}
	first, _, err := r.evlog.Bounds(ctx, p)
	return first, err
}

// rebuild fills win from the events before offset that are inside the
// window (at most DedupIDs of them): what the previous owner remembered.
func (r *Router) rebuild(ctx context.Context, p int, offset int64, win *dedupWindow) error {
	from, err := r.evlog.OffsetAt(ctx, p, time.Now().Add(-r.cfg.DedupWindow))
	if err != nil {
		return err
	}
	if from < 0 || from >= offset {
		return nil
	}
	from = max(from, offset-int64(r.cfg.DedupIDs))
	for from < offset {
		recs, err := r.evlog.Fetch(ctx, p, from)
		if err != nil {
			return err
		}
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= offset {
				return nil
			}
			if ev, reason, _ := r.evlog.Decode(rec); reason == "" {
				win.Seen(ev.AccountID, ev.ID, rec.Time)
			}
			from = rec.Offset + 1
		}
		if len(recs) == 0 {
			return nil // nothing more below offset (a gap of control records)
		}
	}
	return nil
}

// fetchLoop fetches batches from offset on until ctx ends.
func (r *Router) fetchLoop(ctx context.Context, p int, offset int64, out chan<- fetched) {
	backoff := retry.Backoff{Max: maxBackoff}
	for ctx.Err() == nil {
		recs, err := r.evlog.Fetch(ctx, p, offset)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			first, _, lerr := r.evlog.Bounds(ctx, p)
			if lerr == nil && first > offset {
				r.log.Error("router: events were deleted by retention before they were routed", "partition", p, "from", offset, "to", first)
				offset = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("router: fetching events", "partition", p, "offset", offset, "err", err)
			if !retry.Sleep(ctx, backoff.Next()) {
				return
			}
			continue
		}
		backoff.Reset()
		if len(recs) == 0 {
			continue
		}
		offset = recs[len(recs)-1].Offset + 1
		select {
		case out <- fetched{records: recs, fetchedAt: time.Now(), end: r.store.ReadEnd()}:
		case <-ctx.Done():
			return
		}
	}
}
