package load_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/load"
)

// An open loop measures from the intended start: one stall of 100 ms at
// 200 ops/s delays the ~20 operations due during it, and each of them must
// show the wait. A closed loop (and an uncorrected open loop) would record
// one slow sample.
func TestOpenLoopCorrectsCoordinatedOmission(t *testing.T) {
	var calls atomic.Int64
	op := func(ctx context.Context, w int, intended time.Time) (int, error) {
		if calls.Add(1) == 10 {
			time.Sleep(100 * time.Millisecond)
		}
		return 1, nil
	}
	st, err := load.Run(context.Background(), load.Plan{Name: "t", Concurrency: 1, Rate: 200, Duration: 600 * time.Millisecond}, op)
	if err != nil {
		t.Fatal(err)
	}
	slow := st.Latency.TotalCount() - countBelow(st, 10*time.Millisecond)
	if slow < 10 {
		t.Errorf("%d samples at or above 10 ms, want ≥ 10 (every operation due during the stall)", slow)
	}
	if st.Ops < 100 || st.Ops > 121 {
		t.Errorf("ops = %d, want about 120 (200/s for 0.6 s)", st.Ops)
	}
}

func countBelow(st *load.Stats, d time.Duration) int64 {
	var n int64
	for _, b := range st.Latency.Distribution() {
		if b.To < d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

// Nothing done during the warm-up is counted, errors are counted and the first one kept.
func TestWarmupExcludedAndErrorsCounted(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	op := func(ctx context.Context, w int, intended time.Time) (int, error) {
		n := calls.Add(1)
		time.Sleep(time.Millisecond)
		if n%4 == 0 {
			return 0, boom
		}
		return 2, nil
	}
	st, err := load.Run(context.Background(), load.Plan{Name: "t", Concurrency: 2, Warmup: 200 * time.Millisecond, Duration: 200 * time.Millisecond, Interval: 50 * time.Millisecond}, op)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ops >= calls.Load()*3/4 {
		t.Errorf("measured %d of %d calls: the warm-up's half must be excluded", st.Ops, calls.Load())
	}
	if st.Errors == 0 || st.FirstError != "boom" {
		t.Errorf("errors = %d, first %q: want the failures counted and the first kept", st.Errors, st.FirstError)
	}
	if st.Units != 2*(st.Ops-st.Errors) {
		t.Errorf("units = %d, want 2 per successful op (%d)", st.Units, 2*(st.Ops-st.Errors))
	}
	if st.Latency.TotalCount() != st.Ops {
		t.Errorf("latency samples = %d, want one per measured op (%d)", st.Latency.TotalCount(), st.Ops)
	}
	var warm int
	for _, s := range st.Timeline {
		if s.Warmup {
			warm++
		}
	}
	if warm == 0 || warm == len(st.Timeline) {
		t.Errorf("timeline %+v: want warm-up and measured intervals", st.Timeline)
	}
}

func TestPlanValidation(t *testing.T) {
	op := func(context.Context, int, time.Time) (int, error) { return 1, nil }
	f := func(p load.Plan) {
		t.Helper()
		if _, err := load.Run(context.Background(), p, op); err == nil {
			t.Errorf("plan %+v accepted, want an error", p)
		}
	}
	f(load.Plan{Concurrency: 0, Duration: time.Second})
	f(load.Plan{Concurrency: 1})
	f(load.Plan{Concurrency: 1, Duration: time.Second, Rate: -1})
}

func TestThousands(t *testing.T) {
	f := func(in float64, want string) {
		t.Helper()
		if got := load.Thousands(in); got != want {
			t.Errorf("Thousands(%v) = %q, want %q", in, got, want)
		}
	}
	f(0, "0")
	f(999.4, "999")
	f(1000, "1,000")
	f(1234567.6, "1,234,568")
	f(-12345, "-12,345")
}
