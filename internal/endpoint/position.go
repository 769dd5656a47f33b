package endpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// Position is a place in <p>.endpoints: per partition (the index), the
// offset of the next record, so every record before it is meant. The
// store's applied position says how far its view has read; the end offsets
// (Latest) say how far the topic goes.
type Position []int64

// String is "partition:offset,…" ("none" when empty), for logs.
func (p Position) String() string {
	if len(p) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, o := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(o, 10))
	}
	return b.String()
}

// latestTimeout bounds one ListOffsets round of Latest.
const latestTimeout = 5 * time.Second

// ErrNotStarted is returned by Latest and WaitApplied before Start.
var ErrNotStarted = errors.New("endpoint store not started")

// progress is the store's applied position and the means to wait for it.
// Its mutex is a leaf: held only to swap the signal channel.
type progress struct {
	applied []atomic.Int64 // per partition; fixed by Start

	mu      sync.Mutex
	changed chan struct{} // closed at the next advance; nil while nobody waits
}

// advance records that partition's records before next are applied and
// wakes the waiters.
func (pr *progress) advance(partition int, next int64) {
	if partition < 0 || partition >= len(pr.applied) {
		return
	}
	if pr.applied[partition].Load() >= next {
		return
	}
	pr.applied[partition].Store(next) // one follower goroutine per partition writes it
	pr.mu.Lock()
	if pr.changed != nil {
		close(pr.changed)
		pr.changed = nil
	}
	pr.mu.Unlock()
}

// signal returns a channel closed at the next advance.
func (pr *progress) signal() <-chan struct{} {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.changed == nil {
		pr.changed = make(chan struct{})
	}
	return pr.changed
}

// Topic is the full name of the store's topic, <p>.endpoints.
func (s *Store) Topic() string { return s.topic }

// Applied returns the position the view has applied: per partition, the
// offset after the last record read (accepted, rejected or undecodable
// alike). Nil before Start.
func (s *Store) Applied() Position {
	out := make(Position, len(s.progress.applied))
	for i := range out {
		out[i] = s.progress.applied[i].Load()
	}
	return out
}

// Reached reports whether the view has applied every record before pos:
// a few atomic loads, for the hot path. A pos with more partitions than
// the topic had at Start is never reached.
func (s *Store) Reached(pos Position) bool {
	if len(pos) > len(s.progress.applied) {
		return false
	}
	for i, o := range pos {
		if s.progress.applied[i].Load() < o {
			return false
		}
	}
	return true
}

// WaitApplied blocks until the view has applied every record before pos
// (Reached), or ctx ends. It is woken by each applied record, never polls.
func (s *Store) WaitApplied(ctx context.Context, pos Position) error {
	for {
		ch := s.progress.signal() // before the check: no advance is missed
		if s.Reached(pos) {
			return nil
		}
		if len(pos) > len(s.progress.applied) {
			return fmt.Errorf("position %s has more partitions than %s (%d): %w", pos, s.topic, len(s.progress.applied), ErrNotStarted)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("endpoint view at %s, waiting for %s: %w", s.Applied(), pos, ctx.Err())
		}
	}
}

// latest coalesces reads of the end offsets into rounds of one ListOffsets
// request. A caller joins the round that starts next, never one already in
// flight (which may have been answered before the caller began), so every
// answer is at least as new as the call. Its mutex is a leaf.
type latest struct {
	rounds atomic.Int64 // ListOffsets requests sent

	mu       sync.Mutex
	inflight bool
	next     *EndOffsets // the round callers join now; started when the in-flight one ends
}

// EndOffsets is a read of the end offsets of <p>.endpoints (ReadEnd).
type EndOffsets struct {
	done chan struct{}
	pos  Position
	err  error
}

// Done is closed once Result is known.
func (e *EndOffsets) Done() <-chan struct{} { return e.done }

// Result returns the end offsets (shared: do not modify) or why they could
// not be read; valid once Done is closed.
func (e *EndOffsets) Result() (Position, error) { return e.pos, e.err }

// ReadEnd starts reading the end offsets of <p>.endpoints (per partition,
// the offset the next record will get) with a request sent after the call,
// so every write whose answer came before the call lies before them; it
// does not wait. Concurrent callers share requests: one ListOffsets round
// trip serves all who called before it was sent.
func (s *Store) ReadEnd() *EndOffsets {
	if len(s.progress.applied) == 0 {
		e := &EndOffsets{done: make(chan struct{}), err: ErrNotStarted}
		close(e.done)
		return e
	}
	l := &s.latest
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next = &EndOffsets{done: make(chan struct{})}
	}
	r := l.next
	if !l.inflight {
		l.inflight, l.next = true, nil
		go s.runLatest(r)
	}
	return r
}

// Latest is ReadEnd, waiting for its result until ctx ends.
func (s *Store) Latest(ctx context.Context) (Position, error) {
	r := s.ReadEnd()
	select {
	case <-r.done:
		return r.pos, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("end offsets of %s: %w", s.topic, ctx.Err())
	}
}

// runLatest answers r, then starts the round callers joined meanwhile.
func (s *Store) runLatest(r *EndOffsets) {
	for r != nil {
		s.latest.rounds.Add(1)
		r.pos, r.err = s.endOffsets()
		close(r.done)
		l := &s.latest
		l.mu.Lock()
		r, l.next = l.next, nil
		l.inflight = r != nil
		l.mu.Unlock()
	}
}

// endOffsets asks the partition leaders for the topic's end offsets.
func (s *Store) endOffsets() (Position, error) {
	ctx, cancel := context.WithTimeout(context.Background(), latestTimeout)
	defer cancel()
	n := len(s.progress.applied)
	reqs := make([]kafka.OffsetRequest, n)
	for p := range n {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", s.topic, err)
	}
	pos := make(Position, n)
	seen := 0
	for _, po := range resp.Topics[s.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", s.topic, po.Partition, po.Error)
		}
		if po.Partition >= 0 && po.Partition < n {
			pos[po.Partition] = po.LastOffset
			seen++
		}
	}
	if seen != n {
		return nil, fmt.Errorf("end offsets of %s: %d of %d partitions answered", s.topic, seen, n)
	}
	return pos, nil
}
