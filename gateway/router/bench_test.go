package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// BenchmarkRouter: events already on <p>.events (1,000 accounts, two
// subscribed endpoints each among three) are fanned out; events/s routed.
func BenchmarkRouter(b *testing.B) {
	const accounts = 1000
	e := newEnv(b, nil)
	for i := range accounts {
		acct := fmt.Sprintf("acct_%d", i)
		e.endpoint(acct, true, "document.*")
		e.endpoint(acct, true, "*")
		e.endpoint(acct, true, "ocr.completed")
	}
	w := e.kc.NewWriter(e.kc.Topic(schemas.TopicEvents), time.Millisecond)
	w.BatchSize = 5000
	defer w.Close()
	msgs := make([]kafka.Message, 0, 5000)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		acct := fmt.Sprintf("acct_%d", i%accounts)
		msgs = append(msgs, kafka.Message{Key: []byte(acct), Value: fmt.Appendf(nil, `{"id":"evt_%d","type":"document.signed","account_id":"%s","data":{"n":%d}}`, i, acct, i)})
		if len(msgs) == cap(msgs) || i == b.N-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	r, err := New(e.cfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Stop(ctx)
	routed := func() float64 { return counterValue(r.m.fromHTTP) + counterValue(r.m.fromKafka) }
	for routed() < float64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	// CPU of this process (the router, plus the idle gateway and stores) per
	// event: steadier than events/s on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
	b.ReportMetric(counterValue(r.m.tasks)/el.Seconds(), "tasks/s")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// BenchmarkRouterLatency: events published over HTTP (one account, two
// subscribed endpoints), each timed from the start of its POST to the
// moment a reader tailing <p>.deliveries sees its first task: what routing
// adds to publish→receipt. open-50/s publishes on a schedule (open loop);
// serial publishes the next event once the previous one's task arrived
// (an idle system: every event is a batch of its own). Reports p50/p99.
func BenchmarkRouterLatency(b *testing.B) {
	b.Run("open-50/s", func(b *testing.B) { routerLatency(b, 20*time.Millisecond) })
	b.Run("serial", func(b *testing.B) { routerLatency(b, 0) })
}

func routerLatency(b *testing.B, every time.Duration) {
	const acct = "acct_l"
	e := newEnv(b, []string{acct})
	e.endpoint(acct, true, "document.*")
	e.endpoint(acct, true, "*")
	e.router()
	topic := e.kc.Topic(schemas.TopicDeliveries)
	var mu sync.Mutex
	seen := map[string]time.Time{}
	arrived := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for p := range e.kc.Partitions[schemas.TopicDeliveries] {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.kc.BrokerList(), Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
		r.SetOffset(kafka.LastOffset)
		defer r.Close()
		go func() {
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				t, err := schemas.ParseTask(m)
				if err != nil {
					continue
				}
				now := time.Now()
				mu.Lock()
				if _, ok := seen[t.EventID]; !ok {
					seen[t.EventID] = now
				}
				mu.Unlock()
				select {
				case arrived <- struct{}{}:
				default:
				}
			}
		}()
	}
	routed := func(id string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		at, ok := seen[id]
		return at, ok
	}
	wait := func(id string) time.Time {
		deadline := time.After(30 * time.Second)
		for {
			if at, ok := routed(id); ok {
				return at
			}
			select {
			case <-arrived:
			case <-deadline:
				b.Fatalf("event %s not routed within 30s", id)
			}
		}
	}
	event := func(i int) string {
		return fmt.Sprintf(`{"type":"document.signed","account_id":"acct_l","data":{"i":%d}}`, i)
	}
	wait(e.accept(e.service, event(-1))) // the readers are in place and the router routes
	sent := make([]time.Time, b.N)
	ids := make([]string, b.N)
	b.ResetTimer()
	if every == 0 {
		for i := 0; i < b.N; i++ {
			sent[i] = time.Now()
			ids[i] = e.accept(e.service, event(i))
			wait(ids[i])
		}
	} else {
		var wg sync.WaitGroup
		tick := time.NewTicker(every)
		for i := 0; i < b.N; i++ {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent[i] = time.Now()
				code, _, body := testenv.Post(b, "http://"+e.g.Addr()+"/v1/events", e.service, event(i))
				var v struct{ Data struct{ ID string } }
				if json.Unmarshal([]byte(body), &v); code != 202 {
					b.Errorf("POST /v1/events = %d %s", code, body)
				}
				ids[i] = v.Data.ID
			}()
		}
		tick.Stop()
		wg.Wait()
	}
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		if ids[i] != "" {
			lat = append(lat, wait(ids[i]).Sub(sent[i]))
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
