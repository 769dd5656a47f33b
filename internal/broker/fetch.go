package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/zaits/webhooks/internal/retry"
)

// Fetcher reads many partitions with one fetch request per partition
// leader at a time, as Kafka's own consumer does, and hands each
// partition's messages to its Stream.
//
// A kafka-go Reader per partition is a connection and a stream of fetch
// requests per partition: a dispatcher reading 16 partitions of
// <p>.deliveries made 16 requests for every routed event (whose tasks land
// on all of them), and the broker serving them took about as much CPU as
// the dispatcher. With 4 partitions instead of 16 the broker's CPU per
// delivery was 29 % lower and deliveries/s 19 % higher in the same bench.
//
// Each leader has its own loop, so a leader that does not answer holds up
// only its partitions. A Stream takes part in a request while it holds
// fewer than half of its capacity of unread messages; so a partition whose
// reader is slow stays in Kafka, not in memory.
//
// Make one with Config.NewFetcher.
type Fetcher struct {
	link
	log      *slog.Logger
	maxWait  time.Duration
	capacity int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	streams map[topicPartition]*Stream
	loops   map[int]bool  // leaders with a running loop
	wake    chan struct{} // closed (and replaced) when a stream opens or drains
}

// Fetch limits: a partition's share of a response holds any record batch
// the broker accepts (message.max.bytes, 8 MiB in deploy/), so no
// partition is stuck behind a batch bigger than its share (Kafka returns
// an oversized batch only for the first partition of a response).
const (
	fetchPartitionBytes = 9 << 20
	fetchRequestBytes   = 64 << 20
)

// NewFetcher starts a Fetcher with its own transport. maxWait is how long
// the broker holds a request for which no partition has data (0: 250 ms);
// capacity is a Stream's unread messages at most, about (0: 256).
func (c *Config) NewFetcher(log *slog.Logger, maxWait time.Duration, capacity int) *Fetcher {
	if maxWait <= 0 {
		maxWait = 250 * time.Millisecond
	}
	if capacity <= 0 {
		capacity = 256
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Fetcher{
		link: c.newLink(), log: log,
		maxWait: maxWait, capacity: capacity, ctx: ctx, cancel: cancel,
		streams: map[topicPartition]*Stream{}, loops: map[int]bool{}, wake: make(chan struct{}),
	}
}

// Close stops every loop and closes the transport's connections; open
// streams get no more messages.
func (f *Fetcher) Close() {
	f.cancel()
	f.wg.Wait()
	f.close()
}

// Stream is one partition's messages, from the offset it was opened at.
type Stream struct {
	f  *Fetcher
	tp topicPartition

	mu     sync.Mutex
	buf    []kafka.Message
	next   int64         // the offset to fetch next
	ready  chan struct{} // has a value when buf may be non-empty
	closed bool
}

// Open starts reading topic's partition from offset (an absolute offset).
// A partition has one stream per Fetcher: opening it again replaces the
// earlier stream, which gets no more messages (a generation that has not
// closed its stream yet must not keep the next one from reading).
func (f *Fetcher) Open(topic string, partition int, offset int64) (*Stream, error) {
	if offset < 0 {
		return nil, fmt.Errorf("fetch %s/%d: offset %d is not absolute", topic, partition, offset)
	}
	s := &Stream{f: f, tp: topicPartition{topic, partition}, next: offset, ready: make(chan struct{}, 1)}
	f.mu.Lock()
	old := f.streams[s.tp]
	f.streams[s.tp] = s
	f.kickLocked()
	f.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		old.closed, old.buf = true, nil
		old.mu.Unlock()
	}
	return s, nil
}

// FetchMessage returns the partition's next message, waiting until there is one
// or ctx ends.
func (s *Stream) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			m := s.buf[0]
			s.buf[0] = kafka.Message{}
			s.buf = s.buf[1:]
			low := len(s.buf) == s.f.capacity/2
			s.mu.Unlock()
			if low {
				s.f.kick() // it takes part in requests again
			}
			return m, nil
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		}
	}
}

// Close stops reading the partition.
func (s *Stream) Close() {
	s.mu.Lock()
	s.closed, s.buf = true, nil
	s.mu.Unlock()
	s.f.mu.Lock()
	if s.f.streams[s.tp] == s {
		delete(s.f.streams, s.tp)
	}
	s.f.mu.Unlock()
}

// wants reports whether s takes part in the next request, and from where.
func (s *Stream) wants() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next, !s.closed && len(s.buf) < s.f.capacity/2+1
}

// deliver appends the messages read from offset from on (if s is still
// there: not closed, not moved).
func (s *Stream) deliver(from int64, msgs []kafka.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.next != from || len(msgs) == 0 {
		return
	}
	if len(s.buf) == 0 && cap(s.buf) > 4*s.f.capacity {
		s.buf = nil // let a burst's backing array go
	}
	s.buf = append(s.buf, msgs...)
	s.next = msgs[len(msgs)-1].Offset + 1
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (f *Fetcher) kick() {
	f.mu.Lock()
	f.kickLocked()
	f.mu.Unlock()
}

func (f *Fetcher) kickLocked() {
	close(f.wake)
	f.wake = make(chan struct{})
	if len(f.loops) == 0 && f.ctx.Err() == nil {
		// The first loop finds the leaders and starts the others.
		f.loops[-1] = true
		f.wg.Add(1)
		go f.run(-1)
	}
}

// run is the loop of one leader (-1: a loop that only looks up leaders and
// starts their loops, until one exists).
func (f *Fetcher) run(leader int) {
	defer f.wg.Done()
	backoff := retry.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	for f.ctx.Err() == nil {
		f.mu.Lock()
		wake := f.wake
		var open []*Stream
		topics := map[string]bool{}
		for _, s := range f.streams {
			open = append(open, s)
			topics[s.tp.topic] = true
		}
		f.mu.Unlock()
		if len(open) == 0 {
			if !f.idle(wake) {
				break
			}
			continue
		}
		leaders, err := f.leaders(topics)
		if err != nil {
			f.log.Warn("fetch: partition leaders unknown, retrying", "err", err)
			if !retry.Sleep(f.ctx, backoff.Next()) {
				break
			}
			continue
		}
		if f.startLoops(leaders) && leader < 0 {
			f.mu.Lock()
			delete(f.loops, -1)
			f.mu.Unlock()
			return // the leaders' loops go on (and start the loops of new leaders)
		}
		if leader < 0 { // no partition has a leader yet
			if !f.idle(wake) {
				break
			}
			continue
		}
		req := &fetchAPI.Request{ReplicaID: -1, MaxWaitTime: int32(f.maxWait.Milliseconds()), MinBytes: 1, MaxBytes: fetchRequestBytes, SessionID: -1, SessionEpoch: -1}
		asked := map[topicPartition]*Stream{}
		from := map[topicPartition]int64{}
		for _, s := range open {
			if leaders.leader(s.tp.topic, s.tp.partition) != leader {
				continue
			}
			off, ok := s.wants()
			if !ok {
				continue
			}
			asked[s.tp], from[s.tp] = s, off
			req.Topics = appendFetch(req.Topics, s.tp.topic, int32(s.tp.partition), off)
		}
		if len(asked) == 0 {
			if !f.idle(wake) {
				break
			}
			continue
		}
		if err := f.fetch(req, asked, from); err != nil {
			if f.ctx.Err() != nil {
				break
			}
			wait := backoff.Next()
			f.log.Warn("fetch failed, retrying", "leader", leader, "partitions", len(asked), "err", err, "retry_in", wait)
			if !retry.Sleep(f.ctx, wait) {
				break
			}
			continue
		}
		backoff.Reset()
	}
	f.mu.Lock()
	delete(f.loops, leader)
	f.mu.Unlock()
}

// idle waits until wake is closed (a stream opened or drained) or at most
// a second (leaders move); false when the fetcher closes.
func (f *Fetcher) idle(wake chan struct{}) bool {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-f.ctx.Done():
		return false
	}
	return true
}

// startLoops starts a loop for each leader without one, and reports
// whether any leader has a loop.
func (f *Fetcher) startLoops(leaders layout) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	some := false
	for _, t := range leaders {
		for _, l := range t.leaders {
			if l < 0 {
				continue
			}
			some = true
			if !f.loops[l] && f.ctx.Err() == nil {
				f.loops[l] = true
				f.wg.Add(1)
				go f.run(l)
			}
		}
	}
	return some
}

// leaders reads the leaders of topics' partitions; an error when the
// metadata gives one for a topic.
func (f *Fetcher) leaders(topics map[string]bool) (layout, error) {
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	l, err := f.layout(f.ctx, names)
	if err != nil {
		return nil, err
	}
	for name, t := range l {
		if t.err != nil {
			return nil, fmt.Errorf("%s: %w", name, t.err)
		}
	}
	return l, nil
}

// fetch sends req and hands each partition's records to its stream. A
// partition's error is returned (the loop backs off and asks again, with
// the leaders as the metadata then says), after the other partitions'
// records were handed on.
func (f *Fetcher) fetch(req *fetchAPI.Request, asked map[topicPartition]*Stream, from map[topicPartition]int64) error {
	ctx, cancel := context.WithTimeout(f.ctx, f.maxWait+10*time.Second)
	defer cancel()
	m, err := f.transport.RoundTrip(ctx, f.addr, req)
	if err != nil {
		return err
	}
	res, ok := m.(*fetchAPI.Response)
	if !ok {
		return fmt.Errorf("unexpected response %T", m)
	}
	if res.ErrorCode != 0 {
		return kafka.Error(res.ErrorCode)
	}
	var errs []error
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			tp := topicPartition{t.Topic, int(p.Partition)}
			s := asked[tp]
			if s == nil {
				continue
			}
			if p.ErrorCode != 0 {
				err := kafka.Error(p.ErrorCode)
				if errors.Is(err, kafka.OffsetOutOfRange) && p.LogStartOffset > from[tp] {
					// Deleted by retention before it was read: go on from the first offset left.
					s.mu.Lock()
					if s.next == from[tp] {
						s.next = p.LogStartOffset
					}
					s.mu.Unlock()
					f.log.Error("fetch: messages were deleted by retention before they were read", "topic", t.Topic, "partition", p.Partition, "from", from[tp], "to", p.LogStartOffset)
					continue
				}
				errs = append(errs, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
				continue
			}
			msgs, err := ReadRecords(t.Topic, int(p.Partition), from[tp], p.RecordSet.Records)
			if err != nil {
				errs = append(errs, err)
			}
			s.deliver(from[tp], msgs)
		}
	}
	return errors.Join(errs...)
}

// ReadRecords decodes a fetched record set of topic's partition into
// messages, those at offset and after, with their own copies of keys,
// values and headers. A batch cut short at the end of the set (the
// response's size limit) ends it without an error: the next fetch starts
// there; an error is returned only when nothing could be read.
func ReadRecords(topic string, partition int, offset int64, rr protocol.RecordReader) ([]kafka.Message, error) {
	if rr == nil {
		return nil, nil
	}
	var out []kafka.Message
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, fmt.Errorf("reading %s/%d at %d: %w", topic, partition, offset, err)
		}
		if r.Offset < offset { // a batch may start before offset
			continue
		}
		m := kafka.Message{Topic: topic, Partition: partition, Offset: r.Offset, Time: r.Time}
		if m.Key, err = readAll(r.Key); err == nil {
			m.Value, err = readAll(r.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s/%d at %d: %w", topic, partition, r.Offset, err)
		}
		if len(r.Headers) > 0 {
			m.Headers = make([]kafka.Header, len(r.Headers))
			for i, h := range r.Headers {
				m.Headers[i] = kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
			}
		}
		out = append(out, m)
	}
}

func readAll(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}

func appendFetch(topics []fetchAPI.RequestTopic, topic string, partition int32, offset int64) []fetchAPI.RequestTopic {
	rp := fetchAPI.RequestPartition{Partition: partition, CurrentLeaderEpoch: -1, FetchOffset: offset, LogStartOffset: -1, PartitionMaxBytes: fetchPartitionBytes}
	for i := range topics {
		if topics[i].Topic == topic {
			topics[i].Partitions = append(topics[i].Partitions, rp)
			return topics
		}
	}
	return append(topics, fetchAPI.RequestTopic{Topic: topic, Partitions: []fetchAPI.RequestPartition{rp}})
}
