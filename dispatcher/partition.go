package dispatcher

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/schemas"
)

// Entry states.
const (
	queued = iota // read, waiting in its lane
	active        // being attempted, or its hand-off / record writes unacknowledged
	done          // finished: its offset may be committed
)

// entry is one task read from a partition.
type entry struct {
	p      *partition
	offset int64
	size   int
	task   schemas.Task
	state  int          // guarded by p.mu
	refs   atomic.Int32 // outstanding work while active: the attempt plus each unacknowledged write
}

// hold adds a unit of outstanding work (a write waiting for its ack).
func (e *entry) hold() { e.refs.Add(1) }

// release drops a unit; the last one finishes the entry.
func (e *entry) release() {
	if e.refs.Add(-1) == 0 {
		e.p.finish(e)
	}
}

// lane is the queue of one endpoint's tasks in one partition: its tasks are
// attempted one at a time, in offset order.
type lane struct {
	endpoint string
	queue    []*entry
}

// partition processes one assigned partition of <p>.deliveries or a delay
// topic. The committed offset is always the lowest one not finished.
type partition struct {
	d     *Dispatcher
	topic string // full name
	id    int
	tier  int // -1 for <p>.deliveries, else the index in schemas.RetryTopics
	log   *slog.Logger

	mu        sync.Mutex
	space     *sync.Cond // signalled when entries finish or the partition stops
	pending   []*entry   // read and not finished, in offset order (head first)
	head      int
	next      int64 // the offset after the last one read; -1 before any
	count     int   // len(pending) - head
	bytes     int
	active    int // entries in state active
	lanes     map[string]*lane
	committed int64 // last committed offset; guarded by commitMu

	commitMu *sync.Mutex // the generation's: commits are computed and sent one at a time

	// stopping ends with the generation: no more reads, strict retries give up.
	// lanesCtx ends when the drain is over: lanes stop taking tasks.
	stopping  context.Context
	lanesCtx  context.Context
	stopLanes context.CancelFunc
}

func newPartition(d *Dispatcher, topic string, id, tier int, offset int64, commitMu *sync.Mutex) *partition {
	p := &partition{d: d, topic: topic, id: id, tier: tier, next: -1, committed: -1, lanes: map[string]*lane{}, commitMu: commitMu,
		log: d.log.With("topic", topic, "partition", id)}
	if offset >= 0 {
		p.next, p.committed = offset, offset
	}
	p.space = sync.NewCond(&p.mu)
	return p
}

// run reads the partition from offset until ctx ends (a rebalance or stop),
// then lets the lanes finish the tasks already read (bounded), commits the
// lowest unfinished offset and returns.
func (p *partition) run(ctx context.Context, gen *kafka.Generation, offset int64) {
	d := p.d
	p.stopping = ctx
	p.lanesCtx, p.stopLanes = context.WithCancel(context.Background())
	defer p.stopLanes()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: d.cfg.Kafka.BrokerList(), Topic: p.topic, Partition: p.id,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 256,
		Dialer: &kafka.Dialer{Timeout: d.cfg.Kafka.DialTimeout},
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		p.log.Error("set offset", "offset", offset, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.space.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.read(ctx, r)
	p.drain()
	p.commitFinal(gen)
}

func (p *partition) read(ctx context.Context, r *kafka.Reader) {
	backoff := 100 * time.Millisecond
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("fetch failed, retrying", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		t, err := schemas.ParseTask(m)
		if err != nil {
			p.d.m.badTasks.Inc()
			p.log.Warn("skipping a message that is not a task", "offset", m.Offset, "err", err)
		}
		if err == nil && p.tier >= 0 && !t.DueAt.IsZero() {
			// A delay topic: wait until the head is due. Only this
			// partition waits; every partition has its own reader.
			if !sleep(ctx, time.Until(t.DueAt)) {
				return
			}
		}
		e := &entry{p: p, offset: m.Offset, size: len(m.Value), task: t}
		if !p.admit(ctx, e) {
			return
		}
		if err != nil { // not a task: finished at once
			e.refs.Store(1)
			p.mu.Lock()
			e.state = active
			p.active++
			p.mu.Unlock()
			e.release()
		}
	}
}

// admit waits for buffer space, appends e and queues it in its endpoint's
// lane, starting the lane if it was idle.
func (p *partition) admit(ctx context.Context, e *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.count > 0 && (p.count >= p.d.cfg.PartitionBuffer || p.bytes+e.size > p.d.cfg.PartitionBufferBytes) {
		if ctx.Err() != nil {
			return false
		}
		p.space.Wait()
	}
	if ctx.Err() != nil {
		return false
	}
	p.pending = append(p.pending, e)
	p.count++
	p.bytes += e.size
	p.next = e.offset + 1
	p.d.m.buffered.Inc()
	if e.task.DeliveryID == "" { // not a task: finished by the reader
		return true
	}
	l := p.lanes[e.task.EndpointID]
	if l == nil {
		l = &lane{endpoint: e.task.EndpointID}
		p.lanes[e.task.EndpointID] = l
		l.queue = append(l.queue, e)
		p.d.m.lanes.Inc()
		go p.runLane(l)
		return true
	}
	l.queue = append(l.queue, e)
	return true
}

// runLane attempts the lane's tasks one at a time until the lane is empty
// or the partition stops (queued tasks are then abandoned: not committed).
func (p *partition) runLane(l *lane) {
	defer p.d.m.lanes.Dec()
	for {
		p.mu.Lock()
		if len(l.queue) == 0 || p.lanesCtx.Err() != nil {
			delete(p.lanes, l.endpoint)
			p.space.Broadcast()
			p.mu.Unlock()
			return
		}
		e := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		e.state = active
		e.refs.Store(1)
		p.active++
		p.mu.Unlock()
		if !p.d.process(p.lanesCtx, p.stopping, e) {
			p.abandon(e)
			p.mu.Lock()
			delete(p.lanes, l.endpoint) // its remaining tasks stay unfinished
			p.space.Broadcast()
			p.mu.Unlock()
			return
		}
	}
}

// finish marks e done and pops the finished head of the queue.
func (p *partition) finish(e *entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.state != active {
		return
	}
	p.active--
	e.state = done
	n := 0
	for p.head < len(p.pending) && p.pending[p.head].state == done {
		p.bytes -= p.pending[p.head].size
		p.pending[p.head] = nil
		p.head++
		p.count--
		n++
	}
	if p.head > 1024 && p.head*2 > len(p.pending) {
		p.pending = append(p.pending[:0], p.pending[p.head:]...)
		p.head = 0
	}
	p.d.m.buffered.Sub(float64(n))
	p.space.Broadcast()
}

// abandon gives e up unfinished (the partition is stopping): it stays
// uncommitted and is read again by the partition's next owner.
func (p *partition) abandon(e *entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.state == active {
		p.active--
		e.state = queued
	}
	p.space.Broadcast()
}

// drain lets the lanes finish the tasks already read and waits until
// nothing is active (attempts in flight, writes waiting for their acks), at
// most half the session timeout, or until the dispatcher's stop deadline;
// then the lanes are stopped and what is left stays unfinished.
func (p *partition) drain() {
	defer p.stopLanes()
	// Bounded by half the session timeout: heartbeats stop while a
	// generation ends, and the final commit must come before the
	// coordinator expires this member.
	deadline := time.Now().Add(min(p.d.client.cfg.Timeout+2*time.Second, p.d.cfg.SessionTimeout/2))
	t := time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		p.space.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	stop := context.AfterFunc(p.d.hardStop, func() {
		p.mu.Lock()
		p.space.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for (p.active > 0 || len(p.lanes) > 0) && time.Now().Before(deadline) && p.d.hardStop.Err() == nil {
		p.space.Wait()
	}
	if p.active > 0 || len(p.lanes) > 0 {
		p.log.Warn("abandoning unfinished tasks; they will be delivered again", "active", p.active, "lanes", len(p.lanes), "buffered", p.count)
	}
	p.d.m.buffered.Sub(float64(p.count))
}

// commitOffset is the lowest unfinished offset, or -1 when none is known.
func (p *partition) commitOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head < len(p.pending) {
		return p.pending[p.head].offset
	}
	return p.next
}

func (p *partition) commitFinal(gen *kafka.Generation) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	off := p.commitOffset()
	if off < 0 || off == p.committed {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{p.topic: {p.id: off}}); err != nil {
		p.log.Warn("final commit failed; the uncommitted tasks will be delivered again", "offset", off, "err", err)
		return
	}
	p.committed = off
	p.log.Debug("committed on release", "offset", off)
}

// commitLoop commits every partition's lowest unfinished offset in one
// request per interval, until the generation ends.
func (d *Dispatcher) commitLoop(ctx context.Context, gen *kafka.Generation, parts []*partition, mu *sync.Mutex) {
	t := time.NewTicker(d.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mu.Lock()
		d.commitOnce(ctx, gen, parts)
		mu.Unlock()
	}
}

func (d *Dispatcher) commitOnce(ctx context.Context, gen *kafka.Generation, parts []*partition) {
	{
		offsets := map[string]map[int]int64{}
		var changed []*partition
		var values []int64
		for _, p := range parts {
			off := p.commitOffset()
			if off < 0 || off == p.committed {
				continue
			}
			if offsets[p.topic] == nil {
				offsets[p.topic] = map[int]int64{}
			}
			offsets[p.topic][p.id] = off
			changed = append(changed, p)
			values = append(values, off)
		}
		if len(changed) == 0 {
			return
		}
		if err := gen.CommitOffsets(offsets); err != nil {
			if ctx.Err() == nil {
				d.log.Warn("commit failed, retrying next interval", "err", err)
			}
			return
		}
		for i, p := range changed {
			p.committed = values[i]
		}
	}
}

// sleep waits for d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
