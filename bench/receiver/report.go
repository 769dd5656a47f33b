package receiver

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what the receiver saw. Losses count expected events that have
// not arrived yet, so a report is final only after the system had time to
// deliver everything (Outstanding reaches 0 or a drain timeout passes).
type Report struct {
	Requests          int64 `json:"requests"`            // every request
	Attempts          int64 `json:"attempts"`            // verified requests, whatever the answer
	FailedAnswers     int64 `json:"failed_answers"`      // verified requests answered non-2xx or hung (SetBehaviour)
	Delivered         int64 `json:"delivered"`           // distinct deliveries verified and answered 2xx
	SignatureFailures int64 `json:"signature_failures"`  // seed or Standard Webhooks signature or timestamp wrong or missing
	Malformed         int64 `json:"malformed"`           // unknown path, bad body, no data.seq, wrong delivery id or event header
	OrderViolations   int64 `json:"order_violations"`    // a delivery whose seq is below one already delivered to the endpoint
	Duplicates        int64 `json:"duplicates"`          // a delivery id answered 2xx before
	DuplicatesOtherID int64 `json:"duplicates_other_id"` // an event answered 2xx before under another delivery id
	Expected          int64 `json:"expected"`            // events the producer side said were accepted (Expect)
	Losses            int64 `json:"losses"`              // expected events that never arrived
	Unexpected        int64 `json:"unexpected"`          // delivered events nobody said were accepted
	// Latency is accepted→receipt in microseconds, one value per expected
	// event that arrived (its first arrival).
	Latency *hdrhistogram.Histogram `json:"-"`
	// Endpoints holds the same counters per endpoint name.
	Endpoints map[string]EndpointReport `json:"endpoints,omitempty"`
}

// EndpointReport is one endpoint's share of a Report.
type EndpointReport struct {
	Attempts          int64 `json:"attempts"`
	FailedAnswers     int64 `json:"failed_answers"`
	Delivered         int64 `json:"delivered"`
	SignatureFailures int64 `json:"signature_failures"`
	Malformed         int64 `json:"malformed"`
	OrderViolations   int64 `json:"order_violations"`
	Duplicates        int64 `json:"duplicates"`
	DuplicatesOtherID int64 `json:"duplicates_other_id"`
	Expected          int64 `json:"expected"`
	Losses            int64 `json:"losses"`
	Unexpected        int64 `json:"unexpected"`
	// Latency is this endpoint's accepted→receipt latency in microseconds.
	Latency *hdrhistogram.Histogram `json:"-"`
}

// NewLatencyHistogram returns the histogram every latency of the bench is
// recorded in: microseconds from 1 µs to 1 hour, 3 significant digits.
func NewLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

// Report returns the counters and latencies so far.
func (r *Receiver) Report() Report {
	rep := Report{
		Requests:  r.requests.Load(),
		Latency:   NewLatencyHistogram(),
		Endpoints: map[string]EndpointReport{},
	}
	r.mu.RLock()
	names := make(map[string]*endpoint, len(r.endpoints))
	for n, e := range r.endpoints {
		names[n] = e
	}
	r.mu.RUnlock()
	for name, e := range names {
		er := e.report()
		rep.Endpoints[name] = er
		rep.Attempts += er.Attempts
		rep.FailedAnswers += er.FailedAnswers
		rep.Delivered += er.Delivered
		rep.SignatureFailures += er.SignatureFailures
		rep.Malformed += er.Malformed
		rep.OrderViolations += er.OrderViolations
		rep.Duplicates += er.Duplicates
		rep.DuplicatesOtherID += er.DuplicatesOtherID
		rep.Expected += er.Expected
		rep.Losses += er.Losses
		rep.Unexpected += er.Unexpected
		rep.Latency.Merge(er.Latency)
	}
	// Requests that never reached an endpoint (unknown path) are malformed too.
	rep.Malformed = r.malformed.Load()
	return rep
}

func (e *endpoint) report() EndpointReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	er := EndpointReport{
		Attempts:          e.attempts,
		FailedAnswers:     e.failed,
		Delivered:         int64(len(e.deliveries)),
		SignatureFailures: e.sigFails,
		Malformed:         e.malformed,
		OrderViolations:   e.order,
		Duplicates:        e.dups,
		DuplicatesOtherID: e.otherID,
		Latency:           NewLatencyHistogram(),
	}
	for seq := range max(len(e.accepted), len(e.arrived)) {
		var acc, arr int64
		if seq < len(e.accepted) {
			acc = e.accepted[seq]
		}
		if seq < len(e.arrived) {
			arr = e.arrived[seq]
		}
		switch {
		case acc != 0 && arr != 0:
			er.Expected++
			if acc != unmeasured {
				_ = er.Latency.RecordValue(max((arr-acc)/int64(time.Microsecond), 1))
			}
		case acc != 0:
			er.Expected++
			er.Losses++
		case arr != 0:
			er.Unexpected++
		}
	}
	return er
}

// Arrival is one expected or delivered event of one endpoint: when the
// producer side said it was accepted (zero if it was not, or unmeasured)
// and when it first arrived with a 2xx (zero if it has not).
type Arrival struct {
	Endpoint string
	Seq      int64
	Accepted time.Time
	Arrived  time.Time
}

// Arrivals returns every endpoint's accepted or arrived events, in no
// particular order: the raw timeline the chaos runs measure stalls from.
func (r *Receiver) Arrivals() []Arrival {
	r.mu.RLock()
	names := make(map[string]*endpoint, len(r.endpoints))
	for n, e := range r.endpoints {
		names[n] = e
	}
	r.mu.RUnlock()
	var out []Arrival
	at := func(ns int64) time.Time {
		if ns <= 0 {
			return time.Time{}
		}
		return time.Unix(0, ns)
	}
	for name, e := range names {
		e.mu.Lock()
		for seq := range max(len(e.accepted), len(e.arrived)) {
			var acc, arr int64
			if seq < len(e.accepted) {
				acc = e.accepted[seq]
			}
			if seq < len(e.arrived) {
				arr = e.arrived[seq]
			}
			if acc != 0 || arr != 0 {
				out = append(out, Arrival{Endpoint: name, Seq: int64(seq), Accepted: at(acc), Arrived: at(arr)})
			}
		}
		e.mu.Unlock()
	}
	return out
}
