// Package eventlog reads the event log, <p>.events: batches of records
// from an offset (the router's live fan-out), one record at a position (a
// resend), a range by time (a replay), and decodes a record into the event
// every reader agrees on, so that a task made from a record again (after a
// crash, by a resend, by a replay) is identical to the first.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// FetchMaxBytes bounds one fetch of a partition.
const FetchMaxBytes = 4 << 20

// ErrGone is wrapped when a position is below the partition's first
// offset: retention deleted the record.
var ErrGone = errors.New("no longer in the event log (deleted by retention)")

// Record is one message of <p>.events, copied out of the fetch response.
type Record struct {
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
}

// Log reads one topic as a log: <p>.events (New), or <p>.dead (Open).
type Log struct {
	client     *kafka.Client
	topic      string
	partitions int
}

// New returns a reader of <p>.events of kc.
func New(kc *broker.Config) *Log { return Open(kc, schemas.TopicEvents) }

// Open returns a reader of the topic name (without prefix) of kc.
func Open(kc *broker.Config, name string) *Log {
	kc = broker.Defaulted(kc)
	return &Log{client: kc.Client(), topic: kc.Topic(name), partitions: kc.Partitions[name]}
}

// Topic is the topic's full name.
func (l *Log) Topic() string { return l.topic }

// PartitionOf is the partition of key's messages (an account's events, an
// endpoint's dead letters): murmur2 of the key, as this system's writers
// and every Kafka client's default partitioner pick it.
func (l *Log) PartitionOf(key string) int {
	return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(key)}, l.Partitions()...)
}

// Partitions lists the topic's partitions.
func (l *Log) Partitions() []int {
	out := make([]int, l.partitions)
	for i := range out {
		out[i] = i
	}
	return out
}

// Message is rec as a kafka.Message (for schemas.ParseTask).
func (rec *Record) Message(topic string) kafka.Message {
	return kafka.Message{Topic: topic, Partition: rec.Partition, Offset: rec.Offset, Time: rec.Time, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}
}

// Fetch reads the records at and after offset that one fetch returns
// (none when there is nothing yet after MaxWait).
func (l *Log) Fetch(ctx context.Context, p int, offset int64) ([]Record, error) {
	resp, err := l.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: l.topic, Partition: p, Offset: offset, MinBytes: 1, MaxBytes: FetchMaxBytes, MaxWait: 500 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", l.topic, p, offset, resp.Error)
	}
	msgs, err := broker.ReadRecords(l.topic, p, offset, resp.Records)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(msgs))
	for i, m := range msgs {
		out[i] = Record{Partition: p, Offset: m.Offset, Time: m.Time, Key: m.Key, Value: m.Value, Headers: m.Headers}
	}
	return out, nil
}

// From reads the records from offset of partition p that one fetch
// returns, the first of them at offset; it wraps ErrGone when retention
// deleted the record at offset (or there is none there).
func (l *Log) From(ctx context.Context, p int, offset int64) ([]Record, error) {
	recs, err := l.Fetch(ctx, p, offset)
	if errors.Is(err, kafka.OffsetOutOfRange) {
		first, _, berr := l.Bounds(ctx, p)
		if berr == nil && offset < first {
			return nil, fmt.Errorf("%s/%d at %d: %w", l.topic, p, offset, ErrGone)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || recs[0].Offset != offset {
		return nil, fmt.Errorf("%s/%d at %d: %w", l.topic, p, offset, ErrGone)
	}
	return recs, nil
}

// At reads the record at offset of partition p (see From).
func (l *Log) At(ctx context.Context, p int, offset int64) (Record, error) {
	recs, err := l.From(ctx, p, offset)
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// Bounds returns partition p's first offset and its end (the offset the
// next record will get).
func (l *Log) Bounds(ctx context.Context, p int) (first, end int64, err error) {
	resp, err := l.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		l.topic: {kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p)}}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", l.topic, p, err)
	}
	for _, po := range resp.Topics[l.topic] {
		if po.Partition != p {
			continue
		}
		if po.Error != nil {
			return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", l.topic, p, po.Error)
		}
		return po.FirstOffset, po.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", l.topic, p)
}

// OffsetAt is the offset of partition p's first record at or after t, or
// -1 when there is none yet.
func (l *Log) OffsetAt(ctx context.Context, p int, t time.Time) (int64, error) {
	resp, err := l.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		l.topic: {{Partition: p, Timestamp: t.UnixMilli()}}}})
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d: %w", l.topic, p, err)
	}
	for _, po := range resp.Topics[l.topic] {
		if po.Partition != p {
			continue
		}
		if po.Error != nil {
			return 0, fmt.Errorf("list offsets of %s/%d: %w", l.topic, p, po.Error)
		}
		for off := range po.Offsets {
			return off, nil
		}
		return -1, nil
	}
	return -1, nil
}

// Decode parses and validates one record. On failure it returns a metric
// label and the reason for the quarantine header. An event without an id
// gets one derived from its position, without created its record's time:
// every reader derives the same.
func (l *Log) Decode(rec *Record) (ev schemas.Event, reason, why string) {
	if len(rec.Value) == 0 {
		return schemas.Event{}, "empty", "empty message (the value must be the event JSON)"
	}
	ev, issues := schemas.ParseEvent(rec.Value, "")
	if len(issues) > 0 {
		return ev, schemas.ReasonLabel(issues), schemas.IssuesText(issues)
	}
	if string(rec.Key) != ev.AccountID {
		return ev, "key", fmt.Sprintf("key: must equal account_id %q (got %q)", ev.AccountID, schemas.Clip(string(rec.Key), 64))
	}
	if ev.ID == "" {
		ev.ID = schemas.KafkaEventID(l.topic, rec.Partition, rec.Offset)
	}
	if ev.Created == 0 {
		ev.Created = rec.Time.Unix()
	}
	return ev, "", ""
}

// Task is the delivery of the event ev, read from rec, to endpoint: what
// the router makes of it live, and a resend, recover or replay again
// (with their trigger and the attempts recorded before). body is
// schemas.EncodePayload(ev), encoded once per event by the caller.
func Task(ev *schemas.Event, body []byte, rec *Record, endpoint, trigger string, attemptBase int) schemas.Task {
	return schemas.Task{
		DeliveryID:     schemas.DeliveryID(ev.ID, endpoint),
		EventID:        ev.ID,
		EventType:      ev.Type,
		AccountID:      ev.AccountID,
		EndpointID:     endpoint,
		Attempt:        1,
		AttemptBase:    attemptBase,
		Trigger:        trigger,
		AcceptedAt:     rec.Time,
		Body:           body,
		EventPartition: rec.Partition,
		EventOffset:    rec.Offset,
	}
}

// Scan calls fn with the records of partition p from offset on, until the
// partition's end when Scan began, a record at or after until (unless
// zero), maxRecords read, or fn returning false. It returns the offset to
// continue from, or -1 when it reached the end or until.
func (l *Log) Scan(ctx context.Context, p int, offset int64, until time.Time, maxRecords int, fn func(*Record) bool) (int64, error) {
	first, end, err := l.Bounds(ctx, p)
	if err != nil {
		return 0, err
	}
	offset = max(offset, first)
	for read := 0; offset < end; {
		if read >= maxRecords {
			return offset, nil
		}
		recs, err := l.Fetch(ctx, p, offset)
		if err != nil {
			return 0, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			rec := &recs[i]
			if rec.Offset >= end || !until.IsZero() && !rec.Time.Before(until) {
				return -1, nil
			}
			offset = rec.Offset + 1
			read++
			if !fn(rec) {
				if offset < end {
					return offset, nil
				}
				return -1, nil
			}
		}
	}
	return -1, nil
}

// StartAt is the offset of partition p's first record at or after since
// (the partition's first when since is zero, its end when none is).
func (l *Log) StartAt(ctx context.Context, p int, since time.Time) (int64, error) {
	first, end, err := l.Bounds(ctx, p)
	if err != nil || since.IsZero() {
		return first, err
	}
	off, err := l.OffsetAt(ctx, p, since)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return end, nil
	}
	return off, nil
}
