// Package load drives an operation closed-loop (as fast as it goes) or
// open-loop (at a target rate, latency measured from each operation's
// intended start, which corrects for coordinated omission), excludes a
// warm-up, records latency in HDR histograms and throughput per second, and
// draws a live progress line.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op performs one operation for worker (0..Concurrency-1) and returns how
// many units (events, deliveries) it completed. An error counts the
// operation as failed; its units do not count. intended is when the
// operation was due: its start in a closed loop, its slot in the schedule in
// an open loop (latency is measured from it).
type Op func(ctx context.Context, worker int, intended time.Time) (units int, err error)

// Plan says how to drive an Op. The zero value is not usable: Concurrency
// and Duration must be set.
type Plan struct {
	// Name labels the progress line and the result, e.g. "closed-loop".
	Name string
	// Concurrency is the number of workers, each running one operation at a time.
	Concurrency int
	// Rate is the target operations per second over all workers (open
	// loop). 0 runs closed-loop: every worker starts its next operation as
	// soon as the previous one ends.
	Rate float64
	// Warmup runs before measuring; nothing done in it is recorded. Default 0.
	Warmup time.Duration
	// Duration is the measured window after the warm-up.
	Duration time.Duration
	// Interval is the timeline's sampling interval. Default 1 s.
	Interval time.Duration
	// Progress receives the live progress line; nil draws none.
	Progress io.Writer
	// Unit names what Op counts, for the progress line. Default "ops".
	Unit string
}

// Sample is one interval of the timeline.
type Sample struct {
	// T is the end of the interval in seconds since the run started (warm-up included).
	T float64 `json:"t"`
	// Rate is units per second in the interval.
	Rate float64 `json:"rate"`
	// Errors is failed operations in the interval.
	Errors int64 `json:"errors"`
	// Warmup marks intervals that ended within the warm-up.
	Warmup bool `json:"warmup,omitempty"`
}

// Stats is the outcome of a run. Counts cover the measured window only.
type Stats struct {
	Name        string        `json:"name"`
	Mode        string        `json:"mode"` // "closed" or "open"
	Concurrency int           `json:"concurrency"`
	TargetRate  float64       `json:"target_rate,omitempty"` // operations/s (open loop)
	Warmup      time.Duration `json:"warmup_ns"`
	Duration    time.Duration `json:"duration_ns"` // measured window actually run
	Ops         int64         `json:"ops"`
	Units       int64         `json:"units"`
	Errors      int64         `json:"errors"`
	// FirstError is the first failure's message, to say why a run failed.
	FirstError string `json:"first_error,omitempty"`
	// Latency is per operation in microseconds; open loop: from the intended start.
	Latency  *hdrhistogram.Histogram `json:"-"`
	Timeline []Sample                `json:"timeline"`
}

// OpsPerSecond is measured operations per second.
func (s *Stats) OpsPerSecond() float64 { return perSecond(s.Ops, s.Duration) }

// UnitsPerSecond is measured units per second.
func (s *Stats) UnitsPerSecond() float64 { return perSecond(s.Units, s.Duration) }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// NewHistogram returns a latency histogram: microseconds, 1 µs to 1 hour, 3 significant digits.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

// worker is one worker's measurement, merged after the run.
type worker struct {
	hist   *hdrhistogram.Histogram
	ops    int64
	units  int64
	errors int64
	first  error
}

// Run drives op as plan says and returns what it measured. It stops early,
// with what it measured so far, when ctx is cancelled.
func Run(ctx context.Context, plan Plan, op Op) (*Stats, error) {
	if plan.Concurrency < 1 || plan.Duration <= 0 || plan.Rate < 0 || plan.Warmup < 0 {
		return nil, fmt.Errorf("load plan %q: concurrency must be ≥ 1, duration > 0, rate and warm-up ≥ 0", plan.Name)
	}
	if plan.Interval <= 0 {
		plan.Interval = time.Second
	}
	if plan.Unit == "" {
		plan.Unit = "ops"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(plan.Warmup)
	end := measureFrom.Add(plan.Duration)

	var live counters
	sampler := newSampler(plan, start, &live)
	go sampler.run(ctx)

	workers := make([]*worker, plan.Concurrency)
	var wg sync.WaitGroup
	for w := range workers {
		workers[w] = &worker{hist: NewHistogram()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			drive(ctx, plan, w, start, measureFrom, end, op, workers[w], &live)
		}()
	}
	wg.Wait()
	stopped := time.Now()
	cancel()
	sampler.wait()

	s := &Stats{
		Name: plan.Name, Mode: "closed", Concurrency: plan.Concurrency, TargetRate: plan.Rate,
		Warmup: plan.Warmup, Latency: NewHistogram(), Timeline: sampler.samples,
	}
	if plan.Rate > 0 {
		s.Mode = "open"
	}
	if stopped.After(end) {
		stopped = end
	}
	s.Duration = max(stopped.Sub(measureFrom), 0)
	var firstErr error
	for _, w := range workers {
		s.Latency.Merge(w.hist)
		s.Ops += w.ops
		s.Units += w.units
		s.Errors += w.errors
		if firstErr == nil {
			firstErr = w.first
		}
	}
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return s, err
	}
	return s, nil
}

// drive is one worker's loop.
func drive(ctx context.Context, plan Plan, w int, start, measureFrom, end time.Time, op Op, m *worker, live *counters) {
	var interval time.Duration
	next := start
	if plan.Rate > 0 {
		// Worker w owns every Concurrency-th slot of the global schedule.
		interval = time.Duration(float64(plan.Concurrency) / plan.Rate * float64(time.Second))
		next = start.Add(time.Duration(float64(w) / plan.Rate * float64(time.Second)))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		intended := time.Now()
		if plan.Rate > 0 {
			intended = next
			next = next.Add(interval)
			if d := time.Until(intended); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
		if !intended.Before(end) {
			return
		}
		units, err := op(ctx, w, intended)
		done := time.Now()
		if err != nil {
			live.errors.Add(1)
		} else {
			live.units.Add(int64(units))
		}
		if intended.Before(measureFrom) {
			continue
		}
		m.ops++
		if err != nil {
			m.errors++
			if m.first == nil {
				m.first = err
			}
		} else {
			m.units += int64(units)
		}
		_ = m.hist.RecordValue(max(done.Sub(intended).Microseconds(), 1))
	}
}
