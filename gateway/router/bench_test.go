package router

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/ops"
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
	start := time.Now()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Stop(ctx)
	routed := func() float64 { return counterValue(r.m.fromHTTP) + counterValue(r.m.fromKafka) }
	for routed() < float64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(counterValue(r.m.tasks)/el.Seconds(), "tasks/s")
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}
