package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/goccy/go-json"

	"github.com/zaits/webhooks/bench/scenario"
)

// publisher sends the run's events in order (POST /v1/events/batch, one
// request in flight, the events due since the last request in each, at
// most maxBatch) on an open-loop schedule of rate per second, and retries
// every event until it is accepted: the rejected ones with the same ids
// after Retry-After (503, 207), after a connection error on the next
// gateway, as the README tells producers to — and only then sends later
// ones. So acceptance order is sequence order, and any first-arrival order
// violation at the receiver is the system's.
type publisher struct {
	gateways []string // base URLs
	token    string
	account  string
	run      string
	rate     float64
	client   *http.Client
	// accepted is called once per event when its 202 arrives, with the
	// time it was due (latency is measured from then).
	accepted func(seq int64, due time.Time)

	mu          sync.Mutex
	acks        []time.Time // when each accepting answer arrived, in order
	requests    int64
	unavailable int64 // 503 answers
	partial     int64 // 207 answers
	connErrors  int64 // no answer (refused, reset, timeout)
	otherErrors int64 // any other status
	lastErr     string
}

// maxBatch bounds the events of one request (catching up after a stall).
const maxBatch = 200

func newPublisher(gateways []string, token, account, run string, rate float64, accepted func(int64, time.Time)) *publisher {
	return &publisher{gateways: gateways, token: token, account: account, run: run, rate: rate, accepted: accepted,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}}
}

// eventID is the id of event seq of the run.
func (p *publisher) eventID(seq int64) string {
	return "evt_" + p.run + "_" + strconv.FormatInt(seq, 10)
}

// runUntil publishes until ctx ends; the events of the request in flight
// then are retried to the end (or until hard ends), so that every
// sequence number handed out is either accepted or reported.
func (p *publisher) runUntil(ctx, hard context.Context) error {
	start := time.Now()
	due := func(seq int64) time.Time {
		return start.Add(time.Duration(float64(seq-1) / p.rate * float64(time.Second)))
	}
	gw := 0
	next := int64(1)
	tick := time.Duration(float64(time.Second) / p.rate * 10) // about 10 requests a second at the target rate
	for ctx.Err() == nil {
		// The events due by now (at least one).
		if d := time.Until(due(next)); d > 0 {
			if !sleep(ctx, max(d, tick)) {
				return nil
			}
		}
		var seqs []int64
		for now := time.Now(); len(seqs) < maxBatch && (len(seqs) == 0 || !due(next).After(now)); next++ {
			seqs = append(seqs, next)
		}
		for len(seqs) > 0 {
			rejected, retryAfter, err := p.post(hard, p.gateways[gw], seqs)
			if err != nil {
				gw = (gw + 1) % len(p.gateways) // that gateway may be gone: try the next
			}
			for _, s := range seqs {
				if !slices.Contains(rejected, s) {
					p.accepted(s, due(s))
				}
			}
			seqs = rejected
			if len(seqs) == 0 {
				break
			}
			if hard.Err() != nil {
				return fmt.Errorf("%d events not accepted before the run ended (from %d): %s", len(seqs), seqs[0], p.stats().LastError)
			}
			sleep(hard, retryAfter)
		}
	}
	return nil
}

// post sends the events seqs in one batch and returns the ones not
// accepted and how long to wait before retrying them; err is set when no
// answer came.
func (p *publisher) post(ctx context.Context, base string, seqs []int64) (rejected []int64, retryAfter time.Duration, err error) {
	body := []byte(`{"events":[`)
	for i, s := range seqs {
		if i > 0 {
			body = append(body, ',')
		}
		v, err := json.Marshal(scenario.NewEvent(p.eventID(s), p.account, s))
		if err != nil {
			return seqs, time.Second, err
		}
		body = append(body, v...)
	}
	body = append(body, "]}"...)
	status, ra, answer, err := p.do(ctx, base+"/v1/events/batch", body)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	switch {
	case err != nil:
		p.connErrors++
		p.lastErr = err.Error()
		return seqs, 200 * time.Millisecond, err
	case status == http.StatusAccepted:
		p.acks = append(p.acks, time.Now())
		return nil, 0, nil
	case status == http.StatusServiceUnavailable:
		p.unavailable++
		p.lastErr = "503"
		return seqs, ra, nil
	case status == http.StatusMultiStatus:
		p.partial++
		var env struct {
			Data struct {
				Results []struct {
					Index  int    `json:"index"`
					Status string `json:"status"`
				} `json:"results"`
			} `json:"data"`
		}
		if err := json.Unmarshal(answer, &env); err != nil {
			p.lastErr = "207: " + err.Error()
			return seqs, ra, nil
		}
		ok := map[int]bool{}
		for _, r := range env.Data.Results {
			if r.Status == "accepted" {
				ok[r.Index] = true
			}
		}
		for i, s := range seqs {
			if !ok[i] {
				rejected = append(rejected, s)
			}
		}
		if len(rejected) < len(seqs) {
			p.acks = append(p.acks, time.Now())
		}
		p.lastErr = "207"
		return rejected, ra, nil
	default:
		p.otherErrors++
		p.lastErr = fmt.Sprintf("status %d: %.200s", status, answer)
		return seqs, time.Second, nil
	}
}

// do makes one request and returns the status, the Retry-After (1 s when
// absent) and the body.
func (p *publisher) do(ctx context.Context, url string, body []byte) (int, time.Duration, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, 0, nil, err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	ra := time.Second
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		ra = time.Duration(s) * time.Second
	}
	return resp.StatusCode, ra, answer, nil
}

// stats is a copy of the counters and the 202 times.
func (p *publisher) stats() publisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return publisherStats{Acks: append([]time.Time(nil), p.acks...), Requests: p.requests, Unavailable: p.unavailable,
		Partial: p.partial, ConnErrors: p.connErrors, OtherErrors: p.otherErrors, LastError: p.lastErr}
}

type publisherStats struct {
	Acks        []time.Time
	Requests    int64
	Unavailable int64
	Partial     int64
	ConnErrors  int64
	OtherErrors int64
	LastError   string
}
