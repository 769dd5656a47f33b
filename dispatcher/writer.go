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

// write produces m for e, holding e until the ack.
func (d *Dispatcher) write(w *kafka.Writer, e *entry, m kafka.Message) {
	m.WriterData = e
	e.hold()
	if err := w.WriteMessages(d.runCtx, m); err != nil {
		// The writer is closed (shutdown): e stays unfinished.
		d.log.Warn("produce not accepted", "topic", m.Topic, "err", err)
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
