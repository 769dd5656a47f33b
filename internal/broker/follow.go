package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/retry"
)

// Follower reads every partition of a topic from its first offset and
// hands each message to apply, partition by partition in offset order,
// until Stop: the way a process materialises a compacted topic.
type Follower struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Follow starts following topic (a full name) and returns once every
// partition was read up to the high-water mark it had at the start, or
// ctx ended. apply is called from one goroutine per partition.
func Follow(ctx context.Context, kc *Config, topic string, log *slog.Logger, apply func(kafka.Message)) (*Follower, error) {
	first, last, err := Offsets(ctx, kc.Client(), topic)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", topic, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &Follower{cancel: cancel}
	caughtUp := make(chan int, len(last))
	for p, hwm := range last {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: kc.BrokerList(), Topic: topic, Partition: p,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
			Dialer: &kafka.Dialer{Timeout: kc.DialTimeout},
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			cancel()
			return nil, err
		}
		if hwm <= first[p] {
			caughtUp <- p
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer r.Close()
			signalled := hwm <= first[p]
			for {
				m, err := r.FetchMessage(rctx)
				if err != nil {
					if rctx.Err() != nil {
						return
					}
					log.Warn("following a topic: fetch failed, retrying", "topic", topic, "partition", p, "err", err)
					if !retry.Sleep(rctx, time.Second) {
						return
					}
					continue
				}
				apply(m)
				if !signalled && m.Offset+1 >= hwm {
					signalled = true
					caughtUp <- p
				}
			}
		}()
	}
	for range last {
		select {
		case <-caughtUp:
		case <-ctx.Done():
			f.Stop()
			return nil, fmt.Errorf("catching up with %s: %w", topic, ctx.Err())
		}
	}
	return f, nil
}

// Stop ends following and waits for the partition goroutines.
func (f *Follower) Stop() {
	f.cancel()
	f.wg.Wait()
}
