package chaos

import (
	"math"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/receiver"
)

func TestLongestGap(t *testing.T) {
	fault := time.Unix(1000, 0)
	at := func(s float64) time.Time { return fault.Add(time.Duration(s * float64(time.Second))) }
	f := func(times []float64, end float64, want Stall) {
		t.Helper()
		var ts []time.Time
		for _, s := range times {
			ts = append(ts, at(s))
		}
		got := longestGap(ts, fault, at(end))
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
		if !near(got.Seconds, want.Seconds) || !near(got.From, want.From) || !near(got.To, want.To) || got.Resumed != want.Resumed {
			t.Fatalf("longestGap(%v, end %v) = %+v, want %+v", times, end, got, want)
		}
	}
	// Progress before the fault counts from the last time before it.
	f([]float64{-2, -0.5, 1, 9.5, 10, 11}, 60, Stall{Seconds: 49, From: 11, To: 60, Resumed: false})
	f([]float64{-2, -0.5, 1, 9.5, 10, 11, 59}, 60, Stall{Seconds: 48, From: 11, To: 59, Resumed: true})
	f([]float64{11, -0.5, 0.2, 12, 13}, 13.5, Stall{Seconds: 10.8, From: 0.2, To: 11, Resumed: true})
	// Nothing after the fault at all.
	f([]float64{-3, -1}, 5, Stall{Seconds: 6, From: -1, To: 5, Resumed: false})
	// Nothing before it either: the gap starts at the fault.
	f(nil, 5, Stall{Seconds: 5, From: 0, To: 5, Resumed: false})
	// Times after the window's end do not count.
	f([]float64{-1, 2, 30}, 20, Stall{Seconds: 18, From: 2, To: 20, Resumed: false})
}

func TestLatencyDuring(t *testing.T) {
	base := time.Unix(2000, 0)
	var as []receiver.Arrival
	for i := range 100 {
		acc := base.Add(time.Duration(i) * 100 * time.Millisecond)
		as = append(as, receiver.Arrival{Endpoint: "e0", Seq: int64(i), Accepted: acc, Arrived: acc.Add(time.Duration(i+1) * time.Millisecond)})
	}
	as = append(as, receiver.Arrival{Endpoint: "e0", Seq: 100, Accepted: base}) // lost: not counted
	p50, p99, mx, n := latencyDuring(as, base, base.Add(4950*time.Millisecond))
	if n != 50 || p50 != 26 || p99 != 50 || mx != 50 {
		t.Fatalf("latencyDuring = p50 %v p99 %v max %v n %d, want 26, 50, 50, 50", p50, p99, mx, n)
	}
}

func TestMissingRanges(t *testing.T) {
	acc := time.Unix(3000, 0)
	var as []receiver.Arrival
	add := func(ep string, seq int64, arrived bool) {
		a := receiver.Arrival{Endpoint: ep, Seq: seq, Accepted: acc}
		if arrived {
			a.Arrived = acc.Add(time.Second)
		}
		as = append(as, a)
	}
	for seq := int64(1); seq <= 10; seq++ {
		add("e0", seq, seq < 4 || seq > 6) // 4-6 missing at e0
		add("e1", seq, seq < 4 || seq > 7) // 4-7 missing at e1
	}
	got := missingRanges(as)
	want := []MissingRange{{From: 4, To: 6, Endpoints: 2}, {From: 7, To: 7, Endpoints: 1}}
	if len(got) != len(want) {
		t.Fatalf("missingRanges = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("missingRanges = %+v, want %+v", got, want)
		}
	}
}
