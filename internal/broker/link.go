package broker

import (
	"context"
	"errors"
	"net"

	"github.com/segmentio/kafka-go"
)

// link is what Producer and Fetcher talk to Kafka through: a transport of
// its own (connections, and metadata refreshed every metadataTTL) and a
// client whose metadata requests that transport answers from its cache.
type link struct {
	transport *kafka.Transport
	addr      net.Addr
	meta      *kafka.Client
}

func (c *Config) newLink() link {
	tr := c.transport()
	addr := kafka.TCP(c.BrokerList()...)
	return link{transport: tr, addr: addr, meta: &kafka.Client{Addr: addr, Transport: tr}}
}

// topicLayout is a topic's partition ids 0..n-1 (as kafka-go's Writer
// passes them to its balancer) and their leaders (-1: none), or the error
// the metadata gives for the topic.
type topicLayout struct {
	ids     []int
	leaders map[int]int
	err     error
}

// layout is what the metadata cache says of some topics.
type layout map[string]topicLayout

// leader is the leader of topic's partition, -1 when none is known.
func (l layout) leader(topic string, partition int) int {
	if id, ok := l[topic].leaders[partition]; ok {
		return id
	}
	return -1
}

// layout reads the partitions and leaders of topics from the transport's
// metadata cache (no round trip while it is fresh).
func (l link) layout(ctx context.Context, topics []string) (layout, error) {
	res, err := l.meta.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	out := make(layout, len(res.Topics))
	for _, t := range res.Topics {
		if t.Error != nil {
			out[t.Name] = topicLayout{err: t.Error}
			continue
		}
		tl := topicLayout{ids: make([]int, len(t.Partitions)), leaders: make(map[int]int, len(t.Partitions))}
		for i := range tl.ids {
			tl.ids[i] = i
		}
		for _, pt := range t.Partitions {
			tl.leaders[pt.ID] = -1
			if pt.Leader.Host != "" {
				tl.leaders[pt.ID] = pt.Leader.ID
			}
		}
		out[t.Name] = tl
	}
	return out, nil
}

// close closes the transport's idle connections.
func (l link) close() { l.transport.CloseIdleConnections() }

var errNoTopic = errors.New("a message without a topic")
