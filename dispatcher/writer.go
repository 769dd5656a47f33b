package dispatcher

import (
	"errors"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// feedLinger is how long a feed waits, after the first message of a batch,
// for more: what lanes finishing at about the same time record goes in one
// request. (While a request is in flight the next batch fills anyway.)
const feedLinger = 2 * time.Millisecond

// feedRetry is the pause before a failed batch's messages are written again.
const feedRetry = 500 * time.Millisecond

// feed is the single writer of one kind of the dispatcher's messages
// (attempt records, hand-offs): lanes hand it messages through a channel,
// and it writes what has arrived in one Producer call (one request per
// partition leader), waits for the acknowledgements and finishes the
// entries the messages carry (Message.WriterData), then takes the next
// batch. Messages that failed are written again, before any newer ones,
// after feedRetry, until they succeed or the feed stops; their entries
// stay unfinished (uncommitted) meanwhile. One request at a time keeps the
// order per partition.
type feed struct {
	p    *broker.Producer
	ch   chan kafka.Message
	done chan struct{} // closed by stop: no more messages are taken
	exit chan struct{} // closed when the loop has returned
}

func (d *Dispatcher) newFeed() *feed {
	f := &feed{p: d.cfg.Kafka.NewProducer(), ch: make(chan kafka.Message, 4096), done: make(chan struct{}), exit: make(chan struct{})}
	go f.loop(d)
	return f
}

func (f *feed) loop(d *Dispatcher) {
	defer close(f.exit)
	const maxBatch = 1024
	batch := make([]kafka.Message, 0, maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		if len(batch) == 0 {
			select {
			case <-f.done:
				return
			case m := <-f.ch:
				batch = append(batch, m)
			}
			linger.Reset(feedLinger)
		collect:
			for len(batch) < maxBatch {
				select {
				case m := <-f.ch:
					batch = append(batch, m)
				case <-linger.C:
					break collect
				case <-f.done:
					return
				}
			}
			linger.Stop()
		}
		err := f.p.Produce(d.runCtx, batch)
		var werrs kafka.WriteErrors
		if err != nil && !errors.As(err, &werrs) {
			werrs = nil // nothing was tried: all failed
		}
		failed := batch[:0]
		for i := range batch {
			if err == nil || werrs != nil && werrs[i] == nil {
				if e, ok := batch[i].WriterData.(*entry); ok {
					e.release()
				}
				continue
			}
			failed = append(failed, batch[i])
		}
		clear(batch[len(failed):])
		batch = failed
		if len(batch) == 0 {
			continue
		}
		d.m.writeErrors.WithLabelValues(batch[0].Topic).Inc()
		d.log.Warn("produce failed, retrying", "topic", batch[0].Topic, "messages", len(batch), "err", err, "retry_in", feedRetry)
		select {
		case <-f.done:
			return // left unfinished: delivered again after restart
		case <-time.After(feedRetry):
		}
	}
}

// stop ends the loop after the batch in flight; messages not yet written
// are dropped (their entries stay unfinished, so uncommitted).
func (f *feed) stop() error {
	close(f.done)
	<-f.exit
	f.p.Close()
	return nil
}

// write produces m for e, holding e until the ack.
func (d *Dispatcher) write(f *feed, e *entry, m kafka.Message) {
	m.WriterData = e
	e.hold()
	select {
	case f.ch <- m:
	case <-f.done: // shutting down: e stays unfinished
	}
}

// writeAttempt produces an attempt record.
func (d *Dispatcher) writeAttempt(e *entry, a *schemas.Attempt) {
	v, err := json.Marshal(a)
	if err != nil {
		d.log.Error("encode attempt", "err", err)
		return
	}
	d.write(d.attempts, e, kafka.Message{Topic: d.cfg.Kafka.Topic(schemas.TopicAttempts), Key: []byte(a.EndpointID), Value: v})
}
