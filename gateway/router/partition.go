package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// fetchMaxBytes bounds one fetch of a partition: the unit of routing,
// writing and committing.
const fetchMaxBytes = 4 << 20

// record is one message of <p>.events, copied out of the fetch response.
type record struct {
	offset  int64
	time    time.Time
	key     []byte
	value   []byte
	headers []kafka.Header
}

type fetched struct {
	records []record
}

// partition routes one partition from the assigned offset until ctx ends.
func (r *Router) partition(ctx context.Context, a kafka.PartitionAssignment, prog *progress) {
	p := a.ID
	label := strconv.Itoa(p)
	defer r.m.window.DeleteLabelValues(label)
	var next int64
	win := newDedupWindow(r.cfg.DedupWindow, r.cfg.DedupIDs)
	var backoff retry.Backoff
	for {
		var err error
		if next, err = r.resolve(ctx, p, a.Offset); err == nil {
			err = r.rebuild(ctx, p, next, win)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("router: preparing partition", "partition", p, "err", err)
		if !retry.Sleep(ctx, backoff.Next()) {
			return
		}
	}
	r.log.Debug("router: partition ready", "partition", p, "offset", next, "dedup_ids", win.Len())
	prog.set(p, next)

	// A fetcher reads ahead while the previous batch is being written.
	batches := make(chan fetched, 1)
	fctx, cancel := context.WithCancel(ctx)
	var fetcher sync.WaitGroup
	fetcher.Add(1)
	go func() {
		defer fetcher.Done()
		defer close(batches)
		r.fetchLoop(fctx, p, next, batches)
	}()
	defer func() { cancel(); fetcher.Wait() }()

	var out []kafka.Message
	var subs []*endpoint.Entry
	var fe schemas.FilterEvent // the event as endpoint filters see it (filter.go)
	for b := range batches {
		out = out[:0]
		var dup, routed, viaHTTP, tasks int
		for i := range b.records {
			rec := &b.records[i]
			ev, reason, why := r.decode(p, rec)
			if reason != "" {
				out = append(out, r.quarantine(p, rec, why))
				r.m.quarantined.WithLabelValues(reason).Inc()
				continue
			}
			if win.Seen(ev.AccountID, ev.ID, rec.time) {
				dup++
				continue
			}
			if fromHTTP(rec.headers) {
				viaHTTP++
			}
			subs = r.store.Subscribed(subs[:0], ev.AccountID, ev.Type)
			subs = matching(subs, &ev, &fe)
			r.m.perEvent.Observe(float64(len(subs)))
			routed++
			if len(subs) == 0 {
				continue
			}
			body := schemas.EncodePayload(&ev)
			for _, e := range subs {
				t := schemas.Task{
					DeliveryID: schemas.DeliveryID(ev.ID, e.ID),
					EventID:    ev.ID,
					EventType:  ev.Type,
					AccountID:  ev.AccountID,
					EndpointID: e.ID,
					Attempt:    1,
					AcceptedAt: rec.time,
					Body:       body,
				}
				out = append(out, t.Message(r.deliveries))
			}
			tasks += len(subs)
		}
		if err := r.write(ctx, out); err != nil {
			return // ctx ended: this batch is not finished and not committed
		}
		last := b.records[len(b.records)-1].offset
		prog.set(p, last+1)
		r.m.fromHTTP.Add(float64(viaHTTP))
		r.m.fromKafka.Add(float64(routed - viaHTTP))
		r.m.tasks.Add(float64(tasks))
		r.m.duplicates.Add(float64(dup))
		r.m.window.WithLabelValues(label).Set(win.Age().Seconds())
	}
}

// write writes msgs with acks=all, retrying what failed until it succeeds
// or ctx ends. A batch is never skipped: a retry may repeat a task, never
// lose one, and per partition the order stays (kafka-go fails a partition's
// batch as a whole, so what is retried is a suffix per partition).
func (r *Router) write(ctx context.Context, msgs []kafka.Message) error {
	var backoff retry.Backoff
	for len(msgs) > 0 {
		err := r.writer.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			failed := msgs[:0:0]
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, msgs[i])
				}
			}
			msgs = failed
		}
		r.m.retries.Inc()
		r.log.Warn("router: writing tasks failed, retrying", "messages", len(msgs), "err", err)
		if !retry.Sleep(ctx, backoff.Next()) {
			return ctx.Err()
		}
	}
	return nil
}

// decode parses and validates one message of <p>.events. On failure it
// returns a metric label and the reason for the quarantine header.
func (r *Router) decode(p int, rec *record) (schemas.Event, string, string) {
	if len(rec.value) == 0 {
		return schemas.Event{}, "empty", "empty message (the value must be the event JSON)"
	}
	ev, issues := schemas.ParseEvent(rec.value, "")
	if len(issues) > 0 {
		return ev, schemas.ReasonLabel(issues), schemas.IssuesText(issues)
	}
	if string(rec.key) != ev.AccountID {
		return ev, "key", fmt.Sprintf("key: must equal account_id %q (got %q)", ev.AccountID, schemas.Clip(string(rec.key), 64))
	}
	if ev.ID == "" {
		ev.ID = schemas.KafkaEventID(r.events, p, rec.offset)
	}
	if ev.Created == 0 {
		ev.Created = rec.time.Unix()
	}
	return ev, "", ""
}

// quarantine is the <p>.events.invalid copy of r: its key, value and
// headers, plus the reason and where it came from.
func (r *Router) quarantine(p int, rec *record, why string) kafka.Message {
	h := append(rec.headers[:len(rec.headers):len(rec.headers)],
		kafka.Header{Key: schemas.HeaderInvalidReason, Value: []byte(why)},
		kafka.Header{Key: "zaits-source", Value: fmt.Appendf(nil, "%s/%d/%d", r.events, p, rec.offset)})
	return kafka.Message{Topic: r.invalid, Key: rec.key, Value: rec.value, Headers: h, Time: rec.time}
}

func fromHTTP(h []kafka.Header) bool {
	for _, x := range h {
		if x.Key == schemas.HeaderIngest {
			return true
		}
	}
	return false
}

// resolve turns the assigned offset (possibly FirstOffset) into an absolute one.
func (r *Router) resolve(ctx context.Context, p int, offset int64) (int64, error) {
	if offset >= 0 {
		return offset, nil
	}
	first, err := r.listOffset(ctx, p, kafka.FirstOffset)
	if err != nil {
		return 0, err
	}
	return first, nil
}

// listOffset asks for the first offset (kafka.FirstOffset) or the first
// offset at or after a unix-millisecond time; -1 when there is none.
func (r *Router) listOffset(ctx context.Context, p int, ts int64) (int64, error) {
	resp, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{r.events: {{Partition: p, Timestamp: ts}}}})
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d: %w", r.events, p, err)
	}
	for _, po := range resp.Topics[r.events] {
		if po.Partition != p {
			continue
		}
		if po.Error != nil {
			return 0, fmt.Errorf("list offsets of %s/%d: %w", r.events, p, po.Error)
		}
		if ts == kafka.FirstOffset {
			return po.FirstOffset, nil
		}
		for off := range po.Offsets {
			return off, nil
		}
		return -1, nil
	}
	return -1, nil
}

// rebuild fills win from the events before offset that are inside the
// window (at most DedupIDs of them): what the previous owner remembered.
func (r *Router) rebuild(ctx context.Context, p int, offset int64, win *dedupWindow) error {
	from, err := r.listOffset(ctx, p, time.Now().Add(-r.cfg.DedupWindow).UnixMilli())
	if err != nil {
		return err
	}
	if from < 0 || from >= offset {
		return nil
	}
	from = max(from, offset-int64(r.cfg.DedupIDs))
	for from < offset {
		b, err := r.fetch(ctx, p, from)
		if err != nil {
			return err
		}
		for i := range b.records {
			rec := &b.records[i]
			if rec.offset >= offset {
				return nil
			}
			if ev, reason, _ := r.decode(p, rec); reason == "" {
				win.Seen(ev.AccountID, ev.ID, rec.time)
			}
			from = rec.offset + 1
		}
		if len(b.records) == 0 {
			return nil // nothing more below offset (a gap of control records)
		}
	}
	return nil
}

// fetchLoop fetches batches from offset on until ctx ends.
func (r *Router) fetchLoop(ctx context.Context, p int, offset int64, out chan<- fetched) {
	var backoff retry.Backoff
	for ctx.Err() == nil {
		b, err := r.fetch(ctx, p, offset)
		if errors.Is(err, kafka.OffsetOutOfRange) {
			first, lerr := r.listOffset(ctx, p, kafka.FirstOffset)
			if lerr == nil && first > offset {
				r.log.Error("router: events were deleted by retention before they were routed", "partition", p, "from", offset, "to", first)
				offset = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("router: fetching events", "partition", p, "offset", offset, "err", err)
			if !retry.Sleep(ctx, backoff.Next()) {
				return
			}
			continue
		}
		backoff.Reset()
		if len(b.records) == 0 {
			continue
		}
		offset = b.records[len(b.records)-1].offset + 1
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// fetch reads the records at and after offset that one fetch returns.
func (r *Router) fetch(ctx context.Context, p int, offset int64) (fetched, error) {
	resp, err := r.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: r.events, Partition: p, Offset: offset, MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: 500 * time.Millisecond,
	})
	if err != nil {
		return fetched{}, err
	}
	if resp.Error != nil {
		return fetched{}, fmt.Errorf("fetch %s/%d at %d: %w", r.events, p, offset, resp.Error)
	}
	var b fetched
	for {
		kr, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			if len(b.records) > 0 { // a truncated last batch: the next fetch starts there
				return b, nil
			}
			return fetched{}, fmt.Errorf("reading %s/%d at %d: %w", r.events, p, offset, err)
		}
		if kr.Offset < offset { // a compressed batch may start before offset
			continue
		}
		rec := record{offset: kr.Offset, time: kr.Time}
		if rec.key, err = readBytes(kr.Key); err == nil {
			rec.value, err = readBytes(kr.Value)
		}
		if err != nil {
			return fetched{}, fmt.Errorf("reading %s/%d at %d: %w", r.events, p, kr.Offset, err)
		}
		for _, h := range kr.Headers {
			rec.headers = append(rec.headers, kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
		}
		b.records = append(b.records, rec)
	}
}

func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}
