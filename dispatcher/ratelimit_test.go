package dispatcher

import (
	"testing"
	"time"
)

// The limiter's window on a fake clock: n starts, then none until the
// oldest is a window old; a changed limit keeps the recent starts; an idle
// limiter is dropped and a new one takes its place.
func TestLimiterWindow(t *testing.T) {
	ls := newLimiters()
	l := ls.get("we_a", 3)
	at := func(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
	f := func(l *limiter, ms int, wantTake bool, wantWait time.Duration) {
		t.Helper()
		if w := max(l.wait(at(ms)), 0); w != wantWait {
			t.Fatalf("at %d ms: wait %v, want %v", ms, w, wantWait)
		}
		if got := l.take(at(ms)); got != wantTake {
			t.Fatalf("at %d ms: take = %v, want %v", ms, got, wantTake)
		}
	}
	f(l, 0, true, 0)
	f(l, 10, true, 0)
	f(l, 500, true, 0)
	f(l, 600, false, rateWindow-at(600))
	f(l, 1019, false, at(1))
	f(l, 1020, true, 0) // the start at 0 left the window
	f(l, 1029, false, at(1))
	f(l, 1030, true, 0)
	f(l, 1100, false, at(420))

	// A lower limit keeps the most recent starts (500, 1020, 1030 → 1020, 1030).
	m := ls.get("we_a", 2)
	if m == l || !l.evicted {
		t.Fatal("a changed limit kept the old limiter")
	}
	if l.take(at(5000)) {
		t.Fatal("an evicted limiter took a start")
	}
	f(m, 1200, false, at(1020+1020-1200))
	f(m, 2040, true, 0)
	if ls.get("we_a", 2) != m {
		t.Fatal("the same limit gave another limiter")
	}
	// Idle for the sweep interval: dropped, and evicted for whoever holds it.
	ls.base = ls.base.Add(-2 * sweepEvery)
	if n := ls.get("we_b", 1); n == m || !m.evicted || len(ls.m) != 1 {
		t.Fatalf("the idle limiter was not swept: %d limiters", len(ls.m))
	}
}
