package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

func TestEnsureTopicsCreatesCompactedTopicsIdempotently(t *testing.T) {
	cfg := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A second run is a no-op.
	if err := broker.EnsureTopics(ctx, cfg); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	cl := cfg.Client()
	var names []string
	for _, tp := range schemas.AllTopics {
		names = append(names, cfg.Topic(tp.Name))
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Topics) != len(schemas.AllTopics) {
		t.Fatalf("got %d topics, want %d", len(md.Topics), len(schemas.AllTopics))
	}
	for _, tp := range md.Topics {
		want := cfg.Partitions[tp.Name[len(cfg.TopicPrefix)+1:]]
		if len(tp.Partitions) != want {
			t.Errorf("%s: %d partitions, want %d", tp.Name, len(tp.Partitions), want)
		}
	}

	f := func(topic, wantPolicy string) {
		t.Helper()
		resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Resources[0].ConfigEntries[0].ConfigValue
		if got != wantPolicy {
			t.Errorf("%s: cleanup.policy=%s, want %s", topic, got, wantPolicy)
		}
	}
	f(cfg.Topic(schemas.TopicEndpoints), "compact")
	f(cfg.Topic(schemas.TopicDeliveries), "delete")
	f(cfg.Topic(schemas.TopicJobs), "compact")

	// Retention is set explicitly, not left to the broker's default.
	g := func(topic, want string) {
		t.Helper()
		resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}}})
		if err != nil {
			t.Fatal(err)
		}
		e := resp.Resources[0].ConfigEntries[0]
		if e.ConfigValue != want || e.IsDefault {
			t.Errorf("%s: retention.ms=%s (default %v), want %s set on the topic", topic, e.ConfigValue, e.IsDefault, want)
		}
	}
	g(cfg.Topic(schemas.TopicEvents), "2592000000")
	g(cfg.Topic(schemas.TopicDead), "2592000000")
	g(cfg.Topic(schemas.TopicDeliveries), "604800000")
}

func TestEnsureTopicsRefusesPartitionMismatch(t *testing.T) {
	cfg := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changed := *cfg
	changed.Partitions = broker.DefaultPartitions()
	for k, v := range cfg.Partitions {
		changed.Partitions[k] = v
	}
	changed.Partitions[schemas.TopicDeliveries]++
	err := broker.EnsureTopics(ctx, &changed)
	if !errors.Is(err, broker.ErrPartitionMismatch) {
		t.Fatalf("want ErrPartitionMismatch, got %v", err)
	}
	t.Log(err)
}

func TestWriterAndReaderThroughRealBroker(t *testing.T) {
	cfg := testenv.Kafka(t)
	topic := cfg.Topic(schemas.TopicEvents)
	w := cfg.NewWriter(topic, 5*time.Millisecond)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 200
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("acct_1"), Value: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	// One key → one partition → the order is kept.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.BrokerList(), Topic: topic, GroupID: cfg.TopicPrefix + "-reader", MaxWait: 50 * time.Millisecond})
	defer r.Close()
	for i := range n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(m.Value) != want {
			t.Fatalf("message %d = %s, want %s", i, m.Value, want)
		}
	}
}

func TestPingFailsWhenBrokerIsDown(t *testing.T) {
	cfg := &broker.Config{Brokers: "127.0.0.1:1", DialTimeout: 500 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cfg.Ping(ctx, "x.events"); err == nil {
		t.Fatal("Ping of a closed port succeeded")
	}
}
