package suite

import (
	"math"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency summarises an HDR histogram of microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
	// Percentiles is the percentile curve (percentile, µs) for charts.
	Percentiles []PercentilePoint `json:"percentiles,omitempty"`
}

// PercentilePoint is one point of a percentile curve.
type PercentilePoint struct {
	Percentile float64 `json:"p"`
	Micros     int64   `json:"us"`
}

// Summarize computes the summary of h (nil or empty gives zeros).
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	l := Latency{
		Count: h.TotalCount(), Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
	// Points evenly spaced on the log(1/(1-p)) axis the percentile plot uses, up to 99.999.
	for x := 0.0; x <= 5.0001; x += 0.1 {
		p := 100 * (1 - math.Pow(10, -x))
		l.Percentiles = append(l.Percentiles, PercentilePoint{Percentile: p, Micros: h.ValueAtQuantile(p)})
	}
	return l
}
