package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	f := func(b Backoff, want ...time.Duration) {
		t.Helper()
		for i, w := range want {
			if got := b.Next(); got != w {
				t.Fatalf("wait %d = %s, want %s", i, got, w)
			}
		}
	}
	ms := time.Millisecond
	f(Backoff{}, 100*ms, 200*ms, 400*ms, 800*ms, 1600*ms, 3200*ms, 5000*ms, 5000*ms)
	f(Backoff{Min: 50 * ms, Max: time.Second}, 50*ms, 100*ms, 200*ms, 400*ms, 800*ms, time.Second, time.Second)
	f(Backoff{Min: 3 * time.Second, Max: time.Second}, time.Second, time.Second)
	b := Backoff{Min: ms}
	b.Next()
	b.Next()
	b.Reset()
	f(b, ms, 2*ms)
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, 0) || !Sleep(ctx, time.Millisecond) {
		t.Fatal("a wait on a live context did not pass")
	}
	cancel()
	if Sleep(ctx, 0) || Sleep(ctx, time.Hour) {
		t.Fatal("a wait on an ended context passed")
	}
}
