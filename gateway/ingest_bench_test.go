package gateway

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The ingest benchmarks run the real gateway (no router: the numbers
// are ingestion's) against the real Kafka on this machine; the client runs
// on the same cores. Targets: ≥ 15,000 single-event requests/s, ≥ 100,000
// batched events/s, p99 < 20 ms at half those rates (the *AtHalfRate ones).

const benchEvent = `{"type":"document.signed","account_id":"acct_%d","data":{"document_id":"doc_abc123","signer":{"email":"john@example.com","name":"John Doe"},"signed_at":"2024-01-15T14:30:00Z"}}`

func benchClient(e *ingestEnv) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: e.g.Addr(), MaxConns: 1024, MaxConnWaitTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

// do posts body and fails unless the answer is 202.
func do(b *testing.B, c *fasthttp.HostClient, url, token string, body []byte) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.SetBodyRaw(body)
	if err := c.Do(req, resp); err != nil {
		b.Error(err)
		return
	}
	if resp.StatusCode() != 202 {
		b.Errorf("%d %s", resp.StatusCode(), resp.Body())
	}
}

func batchBody(n, salt int) []byte {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(benchEvent, (salt*n+i)%1000)
	}
	return []byte(`{"events":[` + strings.Join(items, ",") + `]}`)
}

// BenchmarkIngestSingle: single-event requests from 256 concurrent clients.
func BenchmarkIngestSingle(b *testing.B) {
	e := newIngestEnv(b, nil)
	c, url := benchClient(e), "http://"+e.g.Addr()+"/v1/events"
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, benchEvent, i)
	}
	var n atomic.Int64
	b.SetParallelism(128) // × GOMAXPROCS (2) = 256 requests in flight
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			do(b, c, url, e.service, bodies[n.Add(1)%1000])
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkIngestBatch: batches of 1,000 events from 8 concurrent clients.
func BenchmarkIngestBatch(b *testing.B) {
	e := newIngestEnv(b, nil)
	c, url := benchClient(e), "http://"+e.g.Addr()+"/v1/events/batch"
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = batchBody(1000, i)
	}
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			do(b, c, url, e.service, bodies[n.Add(1)%16])
		}
	})
	b.ReportMetric(float64(b.N)*1000/time.Since(start).Seconds(), "events/s")
}

// paced sends b.N requests at rate per second (open loop: a request starts
// on schedule whether or not earlier ones finished) and reports p50/p99.
func paced(b *testing.B, rate float64, send func(i int)) {
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			send(i)
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
}

// BenchmarkIngestSingleAtHalfRate: 7,500 single-event requests/s; p99 must stay < 20 ms.
func BenchmarkIngestSingleAtHalfRate(b *testing.B) {
	e := newIngestEnv(b, nil)
	c, url := benchClient(e), "http://"+e.g.Addr()+"/v1/events"
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, benchEvent, i)
	}
	paced(b, 7500, func(i int) { do(b, c, url, e.service, bodies[i%1000]) })
}

// BenchmarkIngestBatchAtHalfRate: 50 batches of 1,000 events/s (50,000 events/s); p99 < 20 ms.
func BenchmarkIngestBatchAtHalfRate(b *testing.B) {
	e := newIngestEnv(b, nil)
	c, url := benchClient(e), "http://"+e.g.Addr()+"/v1/events/batch"
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = batchBody(1000, i)
	}
	paced(b, 50, func(i int) { do(b, c, url, e.service, bodies[i%16]) })
}
