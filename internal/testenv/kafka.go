package testenv

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// Kcat produces lines "key|value" to topic with kcat, the librdkafka
// command-line producer: a plain Kafka client that is not this project's
// code. murmur2_random is the Java client's partitioner, which the
// gateway's own writer uses too (README: producing events).
func Kcat(t testing.TB, kc *broker.Config, topic string, lines ...string) {
	t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", kc.Brokers, "-t", topic, "-K", "|", "-X", "partitioner=murmur2_random", "-X", "acks=all")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || strings.Contains(stderr.String(), "failed") {
		t.Fatalf("kcat: %v: %s", err, stderr.String())
	}
}

// ReadAll returns every message of topic (a full name), partition by partition.
func ReadAll(t testing.TB, kc *broker.Config, topic string) ([]kafka.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := kc.Client()
	first, last, err := broker.Offsets(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	var out []kafka.Message
	for p, end := range last {
		for off := first[p]; off < end; {
			resp, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			if resp.Error != nil {
				return nil, resp.Error
			}
			msgs, err := broker.ReadRecords(topic, p, off, resp.Records)
			if err != nil {
				return nil, err
			}
			out = append(out, msgs...)
			n := len(msgs)
			if n > 0 {
				off = msgs[n-1].Offset + 1
			}
			if n == 0 {
				break
			}
		}
	}
	return out, nil
}

// Tasks returns the tasks on <p>.deliveries; a message that is not a task,
// or not keyed by its endpoint, fails the test.
func Tasks(t testing.TB, kc *broker.Config) []schemas.Task {
	t.Helper()
	msgs, err := ReadAll(t, kc, kc.Topic(schemas.TopicDeliveries))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]schemas.Task, 0, len(msgs))
	for _, m := range msgs {
		task, err := schemas.ParseTask(m)
		if err != nil {
			t.Fatalf("message at %d/%d is not a task: %v", m.Partition, m.Offset, err)
		}
		if string(m.Key) != task.EndpointID {
			t.Fatalf("task for %s keyed %q", task.EndpointID, m.Key)
		}
		out = append(out, task)
	}
	return out
}
