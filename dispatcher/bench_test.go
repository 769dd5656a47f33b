package dispatcher_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// sink is the benchmarks' receiver: it answers 200 at once and records
// the first and last receipt and the accepted→receipt latency.
type sink struct {
	ln          net.Listener
	n           atomic.Int64
	first, last atomic.Int64 // unix nanos
	mu          sync.Mutex
	hist        *hdrhistogram.Histogram // microseconds
}

func startSink(b testing.TB) *sink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &sink{ln: ln, hist: hdrhistogram.New(1, 60_000_000, 3)}
	srv := &fasthttp.Server{Concurrency: 100000, Handler: func(ctx *fasthttp.RequestCtx) {
		now := time.Now().UnixNano()
		s.first.CompareAndSwap(0, now)
		s.last.Store(now)
		body := ctx.PostBody()
		if i := bytes.Index(body, []byte(`"accepted_ns":`)); i >= 0 {
			rest := body[i+len(`"accepted_ns":`):]
			j := bytes.IndexByte(rest, '}')
			if acc, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				s.mu.Lock()
				s.hist.RecordValue((now - acc) / 1000) //nolint:errcheck
				s.mu.Unlock()
			}
		}
		s.n.Add(1)
	}}
	go srv.Serve(ln)                     //nolint:errcheck
	b.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return s
}

// benchEndpoints creates n endpoints posting to the sink, 64 at a time.
func benchEndpoints(b testing.TB, store *endpoint.Store, s *sink, n int) []*endpoint.Entry {
	eps := make([]*endpoint.Entry, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e, _, err := store.Create(context.Background(), schemas.Endpoint{AccountID: "acct_bench",
				URL: fmt.Sprintf("http://%s/e/%d", s.ln.Addr(), i), Events: []string{"document.*"}, Active: true})
			if err != nil {
				b.Error(err)
				return
			}
			eps[i] = e
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return eps
}

func benchTask(e *endpoint.Entry, seq int) schemas.Task {
	now := time.Now()
	evt := "evt_" + strconv.Itoa(seq) + "_" + e.ID
	body := `{"id":"` + evt + `","type":"document.signed","created":` + strconv.FormatInt(now.Unix(), 10) +
		`,"data":{"document_id":"doc_abc123","signer":{"email":"john@example.com","name":"John Doe"},"accepted_ns":` + strconv.FormatInt(now.UnixNano(), 10) + `}}`
	return schemas.Task{DeliveryID: schemas.DeliveryID(evt, e.ID), EventID: evt, EventType: "document.signed",
		AccountID: e.AccountID, EndpointID: e.ID, Attempt: 1, AcceptedAt: now, Body: []byte(body)}
}

// BenchmarkThroughput: b.N tasks are produced first, then a dispatcher
// (a child process, as in production: not sharing a runtime with the
// receiver) delivers them to a local fasthttp receiver; deliveries/s is
// measured from the first receipt to the last (group join excluded).
// Use -benchtime=Nx.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			kc := testenv.Kafka(b)
			store := startStore(b, kc)
			s := startSink(b)
			eps := benchEndpoints(b, store, s, n)
			p := newProducer(b, kc)
			var ts []schemas.Task
			for i := range b.N {
				ts = append(ts, benchTask(eps[i%n], i))
				if len(ts) == 10000 {
					p.send(b, ts...)
					ts = ts[:0]
				}
			}
			p.send(b, ts...)
			b.ResetTimer()
			startChildB(b, kc.TopicPrefix, 2000)
			eventually(b, 10*time.Minute, func() error {
				if got := s.n.Load(); got < int64(b.N) {
					return fmt.Errorf("%d of %d", got, b.N)
				}
				return nil
			})
			b.StopTimer()
			d := time.Duration(s.last.Load() - s.first.Load())
			if b.N > 1 && d > 0 {
				b.ReportMetric(float64(b.N-1)/d.Seconds(), "deliveries/s")
			}
		})
	}
}

// BenchmarkLatencyAtHalfRate: 100 endpoints, tasks produced at 10,000/s (half
// the 20,000/s target) for b.N tasks; reports accepted→receipt percentiles
// (accepted = just before the task is produced). rate=2500 shows the same at a
// rate this shared machine sustains.
func BenchmarkLatencyAtHalfRate(b *testing.B) {
	for _, rate := range []int{10000, 2500} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLatency(b, rate) })
	}
}

func benchLatency(b *testing.B, rate int) {
	const endpoints, tick = 100, 10 * time.Millisecond
	kc := testenv.Kafka(b)
	store := startStore(b, kc)
	s := startSink(b)
	eps := benchEndpoints(b, store, s, endpoints)
	startChildB(b, kc.TopicPrefix, 2000)
	p := newProducer(b, kc)
	// Warm up: one event per endpoint, and forget its latency.
	var ws []schemas.Task
	for i, e := range eps {
		ws = append(ws, benchTask(e, -1-i))
	}
	p.send(b, ws...)
	eventually(b, 30*time.Second, func() error {
		if s.n.Load() < endpoints {
			return fmt.Errorf("warm-up")
		}
		return nil
	})
	s.mu.Lock()
	s.hist.Reset()
	s.mu.Unlock()
	base := s.n.Load()
	b.ResetTimer()
	perTick := rate * int(tick) / int(time.Second)
	t := time.NewTicker(tick)
	for sent := 0; sent < b.N; {
		<-t.C
		var ts []schemas.Task
		for range min(perTick, b.N-sent) {
			ts = append(ts, benchTask(eps[sent%endpoints], sent))
			sent++
		}
		p.send(b, ts...)
	}
	t.Stop()
	eventually(b, 5*time.Minute, func() error {
		if got := s.n.Load() - base; got < int64(b.N) {
			return fmt.Errorf("%d of %d", got, b.N)
		}
		return nil
	})
	b.StopTimer()
	s.mu.Lock()
	defer s.mu.Unlock()
	b.ReportMetric(float64(s.hist.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(s.hist.ValueAtQuantile(99))/1000, "p99-ms")
	b.ReportMetric(float64(s.hist.Max())/1000, "max-ms")
}

// BenchmarkBacklogRSS: b.N tasks (use -benchtime=1000000x) wait on
// <p>.deliveries before a dispatcher child process starts; its resident set
// is sampled while it works through the backlog (at most 60 s).
func BenchmarkBacklogRSS(b *testing.B) {
	const endpoints = 100
	kc := testenv.Kafka(b)
	store := startStore(b, kc)
	s := startSink(b)
	eps := benchEndpoints(b, store, s, endpoints)
	p := newProducer(b, kc)
	var ts []schemas.Task
	for i := range b.N {
		ts = append(ts, benchTask(eps[i%endpoints], i))
		if len(ts) == 20000 {
			p.send(b, ts...)
			ts = ts[:0]
		}
	}
	p.send(b, ts...)
	b.ResetTimer()
	c := startChildB(b, kc.TopicPrefix, 2000)
	var peak, last int64
	deadline := time.Now().Add(60 * time.Second)
	for s.n.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // sampling period
		if rss := rssKiB(c.Process.Pid); rss > 0 {
			peak, last = max(peak, rss), rss
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(last)/1024, "last-rss-MiB")
	b.ReportMetric(float64(s.n.Load()), "delivered")
}

func rssKiB(pid int) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}
