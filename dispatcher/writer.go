package dispatcher

import (
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/schemas"
)

// newAsyncWriter returns an acks=all writer whose completions finish the
// entries they carry (Message.WriterData). A failed batch is written again
// after a pause until it succeeds or the writer closes; its entries stay
// unfinished (uncommitted) meanwhile.
func (d *Dispatcher) newAsyncWriter() *kafka.Writer {
	w := d.cfg.Kafka.NewWriter("", 2*time.Millisecond)
	// kafka-go allocates every batch at its full BatchSize; with batches
	// flushed every few milliseconds a smaller size keeps that garbage down.
	w.BatchSize = 256
	w.Async = true
	w.Completion = func(msgs []kafka.Message, err error) {
		if err != nil {
			d.m.writeErrors.WithLabelValues(msgs[0].Topic).Inc()
			d.log.Warn("produce failed, retrying", "topic", msgs[0].Topic, "messages", len(msgs), "err", err)
			retry := make([]kafka.Message, len(msgs))
			copy(retry, msgs)
			for i := range retry {
				retry[i].Partition, retry[i].Offset = 0, 0
			}
			go func() {
				time.Sleep(500 * time.Millisecond)
				if d.closing.Load() {
					return // left unfinished: delivered again after restart
				}
				if err := w.WriteMessages(d.runCtx, retry...); err != nil {
					d.log.Warn("produce retry not accepted", "err", err)
				}
			}()
			return
		}
		for i := range msgs {
			if e, ok := msgs[i].WriterData.(*entry); ok {
				e.release()
			}
		}
	}
	return w
}

// feed is the single caller of one writer's WriteMessages: lanes hand it
// messages through a channel and it passes them on in batches, so hundreds
// of lanes do not contend for the writer's lock message by message.
type feed struct {
	w    *kafka.Writer
	ch   chan kafka.Message
	done chan struct{} // closed by stop: no more messages are taken
	exit chan struct{} // closed when the loop has returned
}

func (d *Dispatcher) newFeed(w *kafka.Writer) *feed {
	f := &feed{w: w, ch: make(chan kafka.Message, 4096), done: make(chan struct{}), exit: make(chan struct{})}
	go func() {
		defer close(f.exit)
		batch := make([]kafka.Message, 0, 1024)
		for {
			select {
			case <-f.done:
				return
			case m := <-f.ch:
				batch = append(batch[:0], m)
			}
			for len(batch) < cap(batch) {
				select {
				case m := <-f.ch:
					batch = append(batch, m)
					continue
				default:
				}
				break
			}
			if err := f.w.WriteMessages(d.runCtx, batch...); err != nil {
				d.log.Warn("produce not accepted", "topic", batch[0].Topic, "err", err)
			}
			clear(batch)
		}
	}()
	return f
}

// stop ends the loop; messages not yet taken are dropped (their entries
// stay unfinished, so uncommitted), then the writer flushes and closes.
func (f *feed) stop() error {
	close(f.done)
	<-f.exit
	return f.w.Close()
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
