package endpoint

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
)

// TestLatestThenWaitAppliedSeesEveryAnsweredWrite: after a write answered
// by one store, another store's WaitApplied(Latest()) returns only once it
// shows the write: the primitive causal routing is built on. Two
// partitions, so that positions are compared per partition.
func TestLatestThenWaitAppliedSeesEveryAnsweredWrite(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions["endpoints"] = 2 })
	writer, reader := startStore(t, kc, time.Hour), startStore(t, kc, time.Hour)
	if got := reader.Applied(); len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Fatalf("applied position of an empty topic = %v, want 0:0,1:0", got)
	}
	for i := range 30 {
		e, _, err := writer.Create(ctx(t), newEndpoint("acct_a"))
		if err != nil {
			t.Fatal(err)
		}
		// The writer's own view covers its answered write.
		if _, ok := writer.Get(e.ID); !ok || !writer.Reached(writer.Applied()) {
			t.Fatalf("step %d: the writer's view lacks its own write", i)
		}
		pos, err := reader.Latest(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := reader.WaitApplied(ctx(t), pos); err != nil {
			t.Fatal(err)
		}
		if _, ok := reader.Get(e.ID); !ok {
			t.Fatalf("step %d: the view reached %s (applied %s) but lacks %s, written before", i, pos, reader.Applied(), e.ID)
		}
	}
	end, err := writer.Latest(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if end[0]+end[1] != 30 || !writer.Reached(end) || !reader.Reached(end) {
		t.Errorf("end %s after 30 records; applied %s and %s", end, writer.Applied(), reader.Applied())
	}

	// A position beyond the topic is not reached: the wait ends with ctx.
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	beyond := Position{end[0] + 1, end[1]}
	if reader.Reached(beyond) || !errors.Is(reader.WaitApplied(short, beyond), context.DeadlineExceeded) {
		t.Errorf("position %s beyond the end counted as reached", beyond)
	}
	// A wait in progress is woken by the record it waits for.
	done := make(chan error, 1)
	go func() { done <- reader.WaitApplied(ctx(t), Position{end[0], end[1] + 1}) }()
	go func() { done <- reader.WaitApplied(ctx(t), Position{end[0] + 1, end[1]}) }()
	for range 4 {
		if _, _, err := writer.Create(ctx(t), newEndpoint("acct_b")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApplied not woken by new records")
	}
}

// TestLatestSharesRoundTrips: concurrent callers share ListOffsets rounds,
// and each gets an answer.
func TestLatestSharesRoundTrips(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	if _, _, err := s.Create(ctx(t), newEndpoint("acct_a")); err != nil {
		t.Fatal(err)
	}
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pos, err := s.Latest(ctx(t))
			if err == nil && (len(pos) != 1 || pos[0] != 1) {
				t.Errorf("end offsets %v, want 0:1", pos)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.latest.rounds.Load(); n >= callers/2 || n < 1 {
		t.Errorf("%d ListOffsets rounds for %d concurrent callers", n, callers)
	}
}

// TestLatestBeforeStart: nothing to compare with yet.
func TestLatestBeforeStart(t *testing.T) {
	kc := testenv.Kafka(t)
	s, err := NewStore(Config{Dev: true}, kc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latest(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Latest before Start: %v", err)
	}
	if s.Reached(Position{0}) {
		t.Error("a store that has not started reached a position")
	}
}

// BenchmarkLatest: one end-offset read after another (no sharing): the round
// trip a router batch adds when its lookup is not hidden behind other work.
func BenchmarkLatest(b *testing.B) {
	kc := testenv.Kafka(b)
	s, err := NewStore(Config{Dev: true}, kc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Latest(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReached: the check every fetched batch makes when the view is there.
func BenchmarkReached(b *testing.B) {
	s := viewStore(b)
	s.progress.applied = make([]atomic.Int64, 4)
	pos := Position{10, 20, 30, 40}
	for i, o := range pos {
		s.progress.applied[i].Store(o)
	}
	for range b.N {
		if !s.Reached(pos) {
			b.Fatal("not reached")
		}
	}
}
