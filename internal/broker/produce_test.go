package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// keyed returns n messages to topic, keys k0…k(n-1) cycling over keys
// distinct keys, each value "<key>/<sequence of that key>" padded to size.
func keyed(topic string, n, keys, size int) []kafka.Message {
	out := make([]kafka.Message, n)
	seq := map[string]int{}
	for i := range out {
		k := "we_" + strconv.Itoa(i%keys)
		v := fmt.Appendf(nil, "%s/%d/", k, seq[k])
		seq[k]++
		if len(v) < size {
			v = append(v, bytes.Repeat([]byte("x"), size-len(v))...)
		}
		out[i] = kafka.Message{Topic: topic, Key: []byte(k), Value: v, Headers: []kafka.Header{{Key: "h", Value: []byte(k)}}}
	}
	return out
}

// checkOrder reads topic and checks that every message of msgs is there
// once, on the partition kafka-go's Writer picks for its key (want), in
// the order given per key.
func checkOrder(t *testing.T, kc *broker.Config, topic string, msgs []kafka.Message, want map[string]int) {
	t.Helper()
	got, err := testenv.ReadAll(t, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%s holds %d messages, want %d", topic, len(got), len(msgs))
	}
	next := map[string]int{}
	for _, m := range got {
		k := string(m.Key)
		if p, ok := want[k]; ok && p != m.Partition {
			t.Fatalf("key %s on partition %d, the Writer puts it on %d", k, m.Partition, p)
		}
		if wantPrefix := fmt.Sprintf("%s/%d/", k, next[k]); !bytes.HasPrefix(m.Value, []byte(wantPrefix)) {
			t.Fatalf("partition %d offset %d: %.20q, want %q next", m.Partition, m.Offset, m.Value, wantPrefix)
		}
		if len(m.Headers) != 1 || string(m.Headers[0].Value) != k {
			t.Fatalf("headers %v", m.Headers)
		}
		next[k]++
	}
}

func TestProducerWritesWhereTheWriterWouldInOrder(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) {
		c.Partitions[schemas.TopicDeliveries] = 16
		c.Partitions[schemas.TopicAttempts] = 5
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deliveries, attempts := kc.Topic(schemas.TopicDeliveries), kc.Topic(schemas.TopicAttempts)

	// Where kafka-go's Writer (Murmur2) puts each key: the dead-letter
	// topic gets 16 partitions too, for the comparison.
	probe := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 16 })
	w := probe.NewWriter(probe.Topic(schemas.TopicDeliveries), time.Millisecond)
	defer w.Close()
	ref := keyed("", 50, 50, 10)
	if err := w.WriteMessages(ctx, ref...); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	refRead, err := testenv.ReadAll(t, probe, probe.Topic(schemas.TopicDeliveries))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range refRead {
		want[string(m.Key)] = m.Partition
	}

	p := kc.NewProducer()
	defer p.Close()
	// Two topics in one call; 50 keys, 20 messages each.
	msgs := append(keyed(deliveries, 1000, 50, 100), keyed(attempts, 200, 7, 100)...)
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, kc, deliveries, msgs[:1000], want)
	checkOrder(t, kc, attempts, msgs[1000:], nil)
	for i := range msgs[:1000] {
		if m := &msgs[i]; m.Partition != want[string(m.Key)] {
			t.Fatalf("message %d: Partition set to %d, written to %d", i, m.Partition, want[string(m.Key)])
		}
	}
}

// A call bigger than one request (8 MiB) and than one partition's batch
// (1 MiB) is split, and the order per key stays.
func TestProducerSplitsLargeCallsInOrder(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := kc.Topic(schemas.TopicDeliveries)
	p := kc.NewProducer()
	defer p.Close()
	msgs := keyed(topic, 600, 6, 30<<10) // 18 MiB over 6 keys
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, kc, topic, msgs, nil)
}

// When a partition's batch fails, that partition's later messages are not
// written (a caller writing the failed ones again keeps the order), the
// other partitions' are, and the error says which failed.
func TestProducerStopsAPartitionAtItsFirstFailure(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := kc.Topic(schemas.TopicDeliveries)
	p := kc.NewProducer()
	defer p.Close()
	// Keys we_0 … we_9 over 2 partitions; message 20 (key we_0) is over the
	// broker's message.max.bytes (8 MiB), so its partition's batch fails.
	msgs := keyed(topic, 40, 10, 100)
	msgs[20].Value = append(msgs[20].Value, make([]byte, 9<<20)...)
	msgs = append(msgs, kafka.Message{Topic: kc.Topic("nonexistent"), Key: []byte("x"), Value: []byte("y")})
	err := p.Produce(ctx, msgs)
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(msgs) {
		t.Fatalf("error %v (%T), want kafka.WriteErrors of %d", err, err, len(msgs))
	}
	if !errors.Is(werrs[20], kafka.MessageSizeTooLarge) {
		t.Fatalf("message 20: %v, want MessageSizeTooLarge", werrs[20])
	}
	if !errors.Is(werrs[40], kafka.UnknownTopicOrPartition) {
		t.Fatalf("message to a missing topic: %v", werrs[40])
	}
	bad := msgs[20].Partition
	var written []kafka.Message
	for i := range msgs[:40] {
		m := &msgs[i]
		failed := werrs[i] != nil
		if wantFailed := m.Partition == bad && i >= 20; failed != wantFailed {
			t.Fatalf("message %d (partition %d): error %v, want failed=%v", i, m.Partition, werrs[i], wantFailed)
		}
		if !failed {
			written = append(written, *m)
		}
	}
	checkOrder(t, kc, topic, written, nil)
}

// BenchmarkProduce: one router batch (100 tasks of 600 bytes over 16
// partitions), written by kafka-go's Writer (one request per partition)
// and by Producer (one request).
func BenchmarkProduce(b *testing.B) {
	kc := testenv.Kafka(b, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 16 })
	topic := kc.Topic(schemas.TopicDeliveries)
	ctx := context.Background()
	b.Run("writer", func(b *testing.B) {
		w := kc.NewWriter(topic, time.Millisecond)
		defer w.Close()
		for b.Loop() {
			if err := w.WriteMessages(ctx, keyed("", 100, 100, 600)...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("producer", func(b *testing.B) {
		p := kc.NewProducer()
		defer p.Close()
		for b.Loop() {
			if err := p.Produce(ctx, keyed(topic, 100, 100, 600)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
