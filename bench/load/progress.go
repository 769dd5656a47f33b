package load

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// counters are the live totals the sampler reads.
type counters struct {
	units  atomic.Int64
	errors atomic.Int64
}

// sampler builds the timeline and draws the progress line.
type sampler struct {
	plan    Plan
	start   time.Time
	live    *counters
	samples []Sample
	done    chan struct{}
}

func newSampler(plan Plan, start time.Time, live *counters) *sampler {
	return &sampler{plan: plan, start: start, live: live, done: make(chan struct{})}
}

func (s *sampler) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.plan.Interval)
	defer tick.Stop()
	var lastUnits, lastErrs int64
	last := s.start
	sample := func(now time.Time) {
		u, e := s.live.units.Load(), s.live.errors.Load()
		d := now.Sub(last).Seconds()
		if d <= 0 {
			return
		}
		t := now.Sub(s.start)
		s.samples = append(s.samples, Sample{
			T: t.Seconds(), Rate: float64(u-lastUnits) / d, Errors: e - lastErrs, Warmup: t <= s.plan.Warmup,
		})
		s.draw(t, float64(u-lastUnits)/d, u, e)
		lastUnits, lastErrs, last = u, e, now
	}
	for {
		select {
		case <-ctx.Done():
			// A last partial interval only when it is long enough to mean something.
			if now := time.Now(); now.Sub(last) > s.plan.Interval/2 {
				sample(now)
			}
			if s.plan.Progress != nil {
				fmt.Fprintln(s.plan.Progress)
			}
			return
		case now := <-tick.C:
			sample(now)
		}
	}
}

func (s *sampler) wait() { <-s.done }

// draw writes one progress line: bar, elapsed, phase, rate, total, errors.
func (s *sampler) draw(elapsed time.Duration, rate float64, units, errs int64) {
	if s.plan.Progress == nil {
		return
	}
	total := s.plan.Warmup + s.plan.Duration
	frac := min(float64(elapsed)/float64(total), 1)
	const width = 24
	n := int(frac * width)
	phase := "measure"
	if elapsed <= s.plan.Warmup {
		phase = "warm-up"
	}
	fmt.Fprintf(s.plan.Progress, "\r[%s%s] %5.1fs/%.0fs %-7s %-22s %10s %s/s  total %-12s errors %-8d",
		strings.Repeat("█", n), strings.Repeat("░", width-n), elapsed.Seconds(), total.Seconds(), phase,
		s.plan.Name, Thousands(rate), s.plan.Unit, Thousands(float64(units)), errs)
}

// Thousands formats v rounded to an integer with thousands separators.
func Thousands(v float64) string {
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
