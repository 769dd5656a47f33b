package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// perPartition writes n messages to each of topic's partitions (value
// "<partition>/<index>") and returns nothing until they are acknowledged.
func perPartition(t testing.TB, kc *broker.Config, topic string, partitions, n, from int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(kc.BrokerList()...), Topic: topic, Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int {
		p, _ := strconv.Atoi(string(m.Key))
		return p
	}), BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var msgs []kafka.Message
	for p := range partitions {
		for i := from; i < from+n; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(p)), Value: fmt.Appendf(nil, "%d/%d", p, i), Headers: []kafka.Header{{Key: "i", Value: []byte(strconv.Itoa(i))}}})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// expect reads want messages from s: values "<p>/<from>" … in order.
func expect(t *testing.T, s *broker.Stream, p, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := from; i < from+n; i++ {
		m, err := s.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("partition %d, message %d: %v", p, i, err)
		}
		if want := fmt.Sprintf("%d/%d", p, i); string(m.Value) != want || m.Partition != p || int(m.Offset) != i || string(m.Headers[0].Value) != strconv.Itoa(i) {
			t.Fatalf("got %q at %d/%d (headers %v), want %q at offset %d", m.Value, m.Partition, m.Offset, m.Headers, want, i)
		}
	}
}

func TestFetcherReadsManyPartitionsFromTheirOffsets(t *testing.T) {
	const parts = 16
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = parts })
	topic := kc.Topic(schemas.TopicDeliveries)
	perPartition(t, kc, topic, parts, 300, 0)
	f := kc.NewFetcher(slog.New(slog.DiscardHandler), 100*time.Millisecond, 64)
	defer f.Close()
	streams := make([]*broker.Stream, parts)
	for p := range parts {
		s, err := f.Open(topic, p, int64(p*10)) // each from its own offset
		if err != nil {
			t.Fatal(err)
		}
		streams[p] = s
	}
	// Partition 0 is not read at first: the others go on.
	for p := 1; p < parts; p++ {
		expect(t, streams[p], p, p*10, 300-p*10)
	}
	expect(t, streams[0], 0, 0, 300)

	// Messages written later arrive (the requests wait at the broker).
	go func() {
		time.Sleep(300 * time.Millisecond)
		perPartition(t, kc, topic, parts, 5, 300)
	}()
	for p := range parts {
		expect(t, streams[p], p, 300, 5)
	}

	// Closed and opened again elsewhere.
	streams[5].Close()
	s, err := f.Open(topic, 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, 5, 100, 205)

	// Opened again while open (a generation that has not closed its
	// stream yet): the new stream reads, the old one gets nothing more.
	again, err := f.Open(topic, 3, 250)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, again, 3, 250, 55)
	perPartition(t, kc, topic, parts, 1, 305)
	expect(t, again, 3, 305, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if m, err := streams[3].FetchMessage(ctx); err == nil {
		t.Fatalf("the replaced stream still reads: %q at %d", m.Value, m.Offset)
	}
}

// BenchmarkFetch: a round is 100 tasks of 600 bytes over 16 partitions,
// written in one request and read back by one kafka-go Reader per
// partition or by one Fetcher; the time per round includes the broker's
// work (same machine).
func BenchmarkFetch(b *testing.B) {
	const parts = 16
	kc := testenv.Kafka(b, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = parts })
	topic := kc.Topic(schemas.TopicDeliveries)
	p := kc.NewProducer()
	defer p.Close()
	ctx := context.Background()
	round := func(b *testing.B, read func(n int)) {
		for b.Loop() {
			if err := p.Produce(ctx, keyed(topic, 100, 100, 600)); err != nil {
				b.Fatal(err)
			}
			read(100)
		}
	}
	_, last, err := broker.Offsets(ctx, kc.Client(), topic)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("readers", func(b *testing.B) {
		ch := make(chan struct{}, 1024)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for pt := range parts {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.BrokerList(), Topic: topic, Partition: pt, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 256})
			r.SetOffset(last[pt])
			defer r.Close()
			go func() {
				for {
					if _, err := r.FetchMessage(cctx); err != nil {
						return
					}
					ch <- struct{}{}
				}
			}()
		}
		round(b, func(n int) {
			for range n {
				<-ch
			}
		})
		_, last, _ = broker.Offsets(ctx, kc.Client(), topic)
	})
	b.Run("fetcher", func(b *testing.B) {
		f := kc.NewFetcher(slog.New(slog.DiscardHandler), 250*time.Millisecond, 256)
		defer f.Close()
		ch := make(chan struct{}, 1024)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for pt := range parts {
			s, err := f.Open(topic, pt, last[pt])
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				for {
					if _, err := s.FetchMessage(cctx); err != nil {
						return
					}
					ch <- struct{}{}
				}
			}()
		}
		round(b, func(n int) {
			for range n {
				<-ch
			}
		})
	})
}
