package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/retry"
)

// Per-endpoint rate limits (schemas.Endpoint.RateLimit, deliveries per
// second). A limit of n means that no second carries more than n attempts:
// an attempt may start only when fewer than n started within the last
// rateWindow (1.02 s: the 20 ms beyond the second absorb variations of the
// network delay, so that the receiver too never counts more than n within
// a second), so bursts are at most n and a steady backlog goes at n per
// 1.02 s. Every attempt counts (first attempts, retries from the delay
// topics, a strict endpoint's in-place retries), however many lanes of this
// process carry the endpoint's tasks: the limiter is the dispatcher's, keyed
// by endpoint id. Tasks the endpoint did not get (deleted or inactive) do
// not count.
//
// A lane waiting for its endpoint's rate sleeps in its own goroutine and
// holds no concurrency slot: the partition's reader goes on (a full lane's
// later tasks are skipped and read again, as for any slow endpoint) and so
// do the other lanes. Order is kept: a lane makes one attempt at a time.
//
// The limit holds per dispatcher process. An endpoint's first attempts all
// come from one partition of <p>.deliveries, so from one process; its
// retries come from the delay topics' partitions, which another member of
// the group may own, so with several dispatchers the retries of a failing
// endpoint can add to its limit.

// limiters holds the limiter of each rate-limited endpoint with recent
// attempts; limiters idle for a second carry no state and are dropped.
type limiters struct {
	mu    sync.Mutex
	m     map[string]*limiter
	base  time.Time // the limiters' clock starts here (monotonic)
	swept time.Duration
}

// limiter is one endpoint's sliding window: the start times of its last
// (at most limit) attempts, oldest at head once full.
type limiter struct {
	mu      sync.Mutex
	limit   int
	starts  []time.Duration // since limiters.base
	head    int
	evicted bool // dropped from the map: a caller takes another one
}

const (
	rateWindow = time.Second + 20*time.Millisecond
	sweepEvery = 10 * time.Second
)

func newLimiters() *limiters { return &limiters{m: map[string]*limiter{}, base: time.Now()} }

func (ls *limiters) now() time.Duration { return time.Since(ls.base) }

// get returns the limiter of endpoint id with limit; a changed limit keeps
// the most recent starts.
func (ls *limiters) get(id string, limit int) *limiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	if now-ls.swept > sweepEvery {
		ls.swept = now
		for k, l := range ls.m {
			if l.idle(now) {
				delete(ls.m, k)
			}
		}
	}
	l := ls.m[id]
	if l != nil && l.limit == limit {
		return l
	}
	n := &limiter{limit: limit, starts: make([]time.Duration, 0, min(limit, 64))}
	if l != nil {
		l.mu.Lock()
		l.evicted = true
		recent := l.ordered()
		l.mu.Unlock()
		n.starts = append(n.starts, recent[max(0, len(recent)-limit):]...)
	}
	ls.m[id] = n
	return n
}

// ordered returns the starts oldest first. l.mu held.
func (l *limiter) ordered() []time.Duration {
	return append(append([]time.Duration(nil), l.starts[l.head:]...), l.starts[:l.head]...)
}

// idle reports whether l has no start within the window (and evicts it). Called with ls.mu held.
func (l *limiter) idle(now time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.starts) > 0 {
		newest := l.starts[(l.head+len(l.starts)-1)%len(l.starts)]
		if now-newest < rateWindow {
			return false
		}
	}
	l.evicted = true
	return true
}

// wait returns how long until an attempt may start (≤ 0: now).
func (l *limiter) wait(now time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.evicted || len(l.starts) < l.limit {
		return 0
	}
	return l.starts[l.head] + rateWindow - now
}

// take records an attempt starting now if the window has room for it.
func (l *limiter) take(now time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.evicted:
		return false
	case len(l.starts) < l.limit:
		l.starts = append(l.starts, now)
		return true
	case now-l.starts[l.head] < rateWindow:
		return false
	}
	l.starts[l.head] = now
	l.head = (l.head + 1) % l.limit
	return true
}

// acquire waits until ep's rate limit lets an attempt start, then for a
// slot of the global concurrency bound (d.sem); false if ctx ended first
// (nothing is held then). The limit's wait holds no slot; the start is
// recorded once the slot is held, so attempts waiting for a slot never
// start closer together than the limit allows.
func (d *Dispatcher) acquire(ctx context.Context, ep *endpoint.Entry) bool {
	if ep.RateLimit <= 0 {
		select {
		case d.sem <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		l := d.limits.get(ep.ID, ep.RateLimit)
		if w := l.wait(d.limits.now()); w > 0 {
			d.m.rateLimited.Inc()
			if !retry.Sleep(ctx, w) {
				return false
			}
			continue
		}
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		if l.take(d.limits.now()) {
			return true
		}
		<-d.sem // another lane of the endpoint took the room, or the limiter was replaced: wait again
	}
}
