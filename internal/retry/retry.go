// Package retry holds the two shapes every retry loop of the system uses: a
// wait that ends early when its context does, and an exponential backoff.
package retry

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends; it reports whether the whole wait passed
// (false when ctx ended). A d of zero or less returns at once, true unless
// ctx has ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is an exponential backoff: the first wait is Min, each further
// one doubles, up to Max. The zero value waits 100ms, 200ms, … up to 5s.
// A Backoff is used by one goroutine.
type Backoff struct {
	// Min is the first wait. Default 100ms.
	Min time.Duration
	// Max bounds every wait. Default 5s.
	Max time.Duration

	next time.Duration
}

// Next returns the wait before the next try and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 5 * time.Second
	}
	if b.next < lo {
		b.next = lo
	}
	d := min(b.next, hi)
	b.next = min(2*d, hi)
	return d
}

// Reset makes the next wait Min again (after a success).
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps for Next, or until ctx ends (false).
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }
