package dispatcher

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// lagInterval is how often consumer lag and delay-topic backlogs are measured.
const lagInterval = 5 * time.Second

// watchLag updates the lag and backlog gauges from the group's committed
// offsets and the topics' high-water marks (all dispatchers, not just this one).
func (d *Dispatcher) watchLag() {
	defer d.wg.Done()
	cl := d.cfg.Kafka.Client()
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		select {
		case <-d.runCtx.Done():
			return
		case <-t.C:
		}
		for i, name := range append([]string{schemas.TopicDeliveries}, schemas.RetryTopics...) {
			lag, err := d.lag(cl, d.cfg.Kafka.Topic(name))
			if err != nil {
				d.log.Debug("measuring lag", "topic", name, "err", err)
				continue
			}
			d.m.lag.WithLabelValues(name).Set(float64(lag))
			if i > 0 {
				d.m.retryBacklog.WithLabelValues(name).Set(float64(lag))
			}
		}
	}
}

func (d *Dispatcher) lag(cl *kafka.Client, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(d.runCtx, 5*time.Second)
	defer cancel()
	first, last, err := broker.Offsets(ctx, cl, topic)
	if err != nil {
		return 0, err
	}
	parts := make([]int, 0, len(last))
	for p := range last {
		parts = append(parts, p)
	}
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: d.cfg.Group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, err
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	var lag int64
	for _, p := range resp.Topics[topic] {
		from := p.CommittedOffset
		if from < 0 {
			from = first[p.Partition]
		}
		lag += max(0, last[p.Partition]-from)
	}
	return lag, nil
}
