package chaos

import (
	"sort"
	"time"

	"github.com/zaits/webhooks/bench/receiver"
)

// Stall is the longest time without progress (a 202, or a first arrival at
// the receiver) around a fault: measured over the progress times from the
// last one before the fault to the end of the window, in seconds relative
// to the fault.
type Stall struct {
	// Seconds is the length of the longest gap.
	Seconds float64 `json:"seconds"`
	// From and To are the gap's ends, in seconds after the fault (From may
	// be negative: the last progress before it).
	From float64 `json:"from"`
	To   float64 `json:"to"`
	// Resumed is false when nothing progressed after the gap before the
	// window ended (To is then the window's end).
	Resumed bool `json:"resumed"`
}

// longestGap finds the longest gap in times (any order) between the last
// time before fault and end.
func longestGap(times []time.Time, fault, end time.Time) Stall {
	ts := append([]time.Time(nil), times...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	prev := fault
	i := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(fault) })
	if i > 0 {
		prev = ts[i-1]
	}
	rel := func(t time.Time) float64 { return t.Sub(fault).Seconds() }
	best := Stall{Seconds: -1}
	for ; i < len(ts) && !ts[i].After(end); i++ {
		if g := ts[i].Sub(prev).Seconds(); g > best.Seconds {
			best = Stall{Seconds: g, From: rel(prev), To: rel(ts[i]), Resumed: true}
		}
		prev = ts[i]
	}
	if g := end.Sub(prev).Seconds(); g > best.Seconds {
		best = Stall{Seconds: g, From: rel(prev), To: rel(end), Resumed: false}
	}
	return best
}

// firstArrivals are the times of every first 2xx arrival at the receiver.
func firstArrivals(as []receiver.Arrival) []time.Time {
	out := make([]time.Time, 0, len(as))
	for _, a := range as {
		if !a.Arrived.IsZero() {
			out = append(out, a.Arrived)
		}
	}
	return out
}

// latencyDuring is the publish→receipt latency (from when the event was
// due to its first arrival) of the events due in [from, to]: p50, p99 and
// max in milliseconds, and how many there were.
func latencyDuring(as []receiver.Arrival, from, to time.Time) (p50, p99, maxMs float64, n int) {
	var ls []time.Duration
	for _, a := range as {
		if a.Accepted.IsZero() || a.Arrived.IsZero() || a.Accepted.Before(from) || a.Accepted.After(to) {
			continue
		}
		ls = append(ls, a.Arrived.Sub(a.Accepted))
	}
	if len(ls) == 0 {
		return 0, 0, 0, 0
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	q := func(f float64) float64 {
		return float64(ls[min(int(f*float64(len(ls))), len(ls)-1)]) / float64(time.Millisecond)
	}
	return q(0.50), q(0.99), float64(ls[len(ls)-1]) / float64(time.Millisecond), len(ls)
}

// perSecond counts times in one-second bins from start (bin i covers
// [start+i s, start+i+1 s)), up to end.
func perSecond(times []time.Time, start, end time.Time) []int {
	n := int(end.Sub(start)/time.Second) + 1
	if n <= 0 {
		return nil
	}
	out := make([]int, n)
	for _, t := range times {
		if i := int(t.Sub(start) / time.Second); !t.Before(start) && i < n {
			out[i]++
		}
	}
	return out
}

// longestEndpointGap is the longest gap of any one endpoint's first
// arrivals between the fault and end, and that endpoint.
func longestEndpointGap(as []receiver.Arrival, fault, end time.Time) (float64, string) {
	by := map[string][]time.Time{}
	for _, a := range as {
		if !a.Arrived.IsZero() {
			by[a.Endpoint] = append(by[a.Endpoint], a.Arrived)
		}
	}
	var worst float64
	var name string
	for ep, ts := range by {
		if g := longestGap(ts, fault, end); g.Seconds > worst {
			worst, name = g.Seconds, ep
		}
	}
	return worst, name
}

// MissingRange is a run of consecutive sequence numbers accepted but not
// delivered to the same number of endpoints.
type MissingRange struct {
	From      int64 `json:"from"`
	To        int64 `json:"to"`
	Endpoints int   `json:"endpoints"` // how many endpoints miss each of them
}

// missingRanges lists the accepted events that did not arrive everywhere,
// as ranges of sequence numbers (at most 20), to tell a lost event (missing
// at every endpoint: not routed) from lost deliveries (missing at some).
func missingRanges(as []receiver.Arrival) []MissingRange {
	missing := map[int64]int{}
	for _, a := range as {
		if !a.Accepted.IsZero() && a.Arrived.IsZero() {
			missing[a.Seq]++
		}
	}
	seqs := make([]int64, 0, len(missing))
	for s := range missing {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var out []MissingRange
	for _, s := range seqs {
		if n := len(out); n > 0 && out[n-1].To == s-1 && out[n-1].Endpoints == missing[s] {
			out[n-1].To = s
			continue
		}
		if len(out) == 20 {
			break
		}
		out = append(out, MissingRange{From: s, To: s, Endpoints: missing[s]})
	}
	return out
}
