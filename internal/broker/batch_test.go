package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Concurrent callers' messages are all written, each call's in its order,
// and a call with a message that cannot be written gets the error for it
// (and for its partition's later ones) without failing the other calls.
func TestBatcherWritesConcurrentCallsAndAnswersEachOne(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 8 })
	topic := kc.Topic(schemas.TopicDeliveries)
	b := kc.NewBatcher(0, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const callers = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	var written []kafka.Message
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				msgs := keyed(topic, 3, 1, 50)
				for i := range msgs { // one key per caller; keyed numbers its messages per call
					msgs[i].Key = []byte{byte('a' + c)}
				}
				if errs := b.Write(ctx, msgs); errs[0] != nil || errs[1] != nil || errs[2] != nil {
					t.Errorf("caller %d: %v", c, errs)
					return
				}
				mu.Lock()
				written = append(written, msgs...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, err := testenv.ReadAll(t, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != callers*20*3 || len(written) != len(got) {
		t.Fatalf("%d messages on the topic, %d written, want %d", len(got), len(written), callers*20*3)
	}
	// Per key (caller), each call's three messages are consecutive and in order.
	last := map[string]int{}
	for _, m := range got {
		k := string(m.Key)
		want := (last[k] % 3)
		if seq := int(m.Value[len("we_0/")] - '0'); seq != want {
			t.Fatalf("key %s: message %d of a call after %d messages", k, seq, last[k])
		}
		last[k]++
	}

	bad := keyed(topic, 2, 1, 10)
	bad[0].Value = append(bad[0].Value, make([]byte, 9<<20)...) // over message.max.bytes
	good := keyed(topic, 1, 1, 10)
	good[0].Key = []byte("other")
	var badErrs, goodErrs []error
	wg.Add(2)
	go func() { defer wg.Done(); badErrs = b.Write(ctx, bad) }()
	go func() { defer wg.Done(); goodErrs = b.Write(ctx, good) }()
	wg.Wait()
	if !errors.Is(badErrs[0], kafka.MessageSizeTooLarge) || badErrs[1] == nil {
		t.Fatalf("oversized call: %v", badErrs)
	}
	if goodErrs[0] != nil && bad[0].Partition != good[0].Partition {
		t.Fatalf("a call on another partition failed with the oversized one: %v", goodErrs)
	}

	b.Close()
	b.Close() // again: nothing
	if errs := b.Write(ctx, keyed(topic, 1, 1, 10)); !errors.Is(errs[0], broker.ErrClosed) {
		t.Fatalf("write after Close: %v", errs)
	}
}
