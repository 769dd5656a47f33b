package dispatcher

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/retry"
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
	lane   *lane
	offset int64
	size   int
	task   schemas.Task
	state  int          // guarded by p.mu
	index  int          // in p.unfinished; guarded by p.mu
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
// attempted one at a time, in offset order. At most Config.LaneBuffer of
// them are held in memory (queued, or active until their writes are
// acknowledged); the partition's reader skips the endpoint's later tasks
// and remembers the first one skipped, and the lane reads them again from
// Kafka when its queue is empty (refill). So a slow or hanging endpoint's
// backlog stays in Kafka instead of filling the partition's buffer, and the
// other endpoints of the partition keep flowing.
type lane struct {
	endpoint string
	queue    []*entry
	held     int   // the lane's unfinished entries in memory
	skipFrom int64 // -1, or the lowest offset of this endpoint's tasks not in memory

	// The refill's reader and the message it read last, at skipFrom, that
	// did not fit yet: kept while the lane works through its queue, so a
	// lane that stays behind reads on from where it stopped instead of
	// opening a reader (two connections, a metadata request and a discarded
	// prefetch) for every Config.LaneBuffer tasks. Used by the lane's own
	// goroutine only.
	reader   *kafka.Reader
	pending  *kafka.Message
	parkedAt time.Time // when the last refill stopped with the lane full
}

// maxFetchBackoff bounds the pause between failed fetches: once Kafka has
// moved a dead broker's partitions to a new leader the reader finds it at
// its next try, and a longer pause would only add to the stall.
const maxFetchBackoff = time.Second

// refillIdle is how long a lane's refill reader may wait for the lane to
// work through its queue; a slower lane (a hanging endpoint) closes it and
// opens a new one when it is ready, so slow lanes hold no connections.
const refillIdle = 2 * time.Second

// closeReader ends the lane's refill reader, if any.
func (l *lane) closeReader() {
	if l.reader != nil {
		l.reader.Close()
		l.reader, l.pending = nil, nil
	}
}

// partition processes one assigned partition of <p>.deliveries or a delay
// topic. The committed offset is always the lowest one not finished.
type partition struct {
	d     *Dispatcher
	topic string // full name
	id    int
	tier  int // -1 for <p>.deliveries, else the index in schemas.RetryTopics
	log   *slog.Logger

	mu            sync.Mutex
	space         *sync.Cond // signalled when entries finish or the partition stops
	unfinished    entryHeap  // the entries in memory and not finished, lowest offset first
	next          int64      // the offset after the last one read; -1 before any
	count         int        // len(unfinished)
	bytes         int        // their bodies' bytes
	active        int        // entries in state active
	lanes         map[string]*lane
	floors        map[string]int64 // endpoint → the lowest skipped offset of its lane that stopped before reading it again
	resume        *resume          // the previous owner's record: finished tasks are not delivered again (resume.go)
	committed     int64            // last committed offset; guarded by commitMu
	committedMeta string           // and its resume record; guarded by commitMu

	commitMu *sync.Mutex // the generation's: commits are computed and sent one at a time; taken before mu (internal/locksordering.txt)

	// stopping ends with the generation: no more reads, strict retries give up.
	// lanesCtx ends when the drain is over: lanes stop taking tasks.
	stopping  context.Context
	lanesCtx  context.Context
	stopLanes context.CancelFunc
}

func newPartition(d *Dispatcher, topic string, id, tier int, offset int64, commitMu *sync.Mutex) *partition {
	p := &partition{d: d, topic: topic, id: id, tier: tier, next: -1, floors: map[string]int64{}, committed: -1, lanes: map[string]*lane{}, commitMu: commitMu,
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
	if offset < 0 { // nothing committed yet: from the first offset
		first, _, err := broker.Offsets(ctx, d.kafka, p.topic)
		if err != nil {
			p.log.Error("first offset", "err", err)
			return
		}
		offset = first[p.id]
	}
	r, err := d.fetcher.Open(p.topic, p.id, offset)
	if err != nil {
		p.log.Error("open partition", "offset", offset, "err", err)
		return
	}
	defer r.Close()
	wake := func() {
		p.mu.Lock()
		p.space.Broadcast()
		p.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, wake)
	defer stop()
	stopLanes := context.AfterFunc(p.lanesCtx, wake)
	defer stopLanes()
	p.read(ctx, r)
	p.drain()
	p.commitFinal(gen)
}

func (p *partition) read(ctx context.Context, r *broker.Stream) {
	backoff := retry.Backoff{Max: maxFetchBackoff}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff.Next()
			p.log.Warn("fetch failed, retrying", "err", err, "retry_in", wait)
			if !retry.Sleep(ctx, wait) {
				return
			}
			continue
		}
		backoff.Reset()
		t, err := schemas.ParseTask(m)
		if err != nil {
			p.d.m.badTasks.Inc()
			p.log.Warn("skipping a message that is not a task", "offset", m.Offset, "err", err)
		}
		done := err != nil || p.resume.finished(m.Offset, t.EndpointID)
		if !done && p.tier >= 0 && !t.DueAt.IsZero() {
			// A delay topic: wait until the head is due. Only this
			// partition waits: the fetcher stops fetching for its
			// stream once it holds half its buffer, and goes on with
			// the others.
			if !retry.Sleep(ctx, time.Until(t.DueAt)) {
				return
			}
		}
		if done {
			// Not a task, or one the previous owner finished: finished at once.
			p.mu.Lock()
			p.next = m.Offset + 1
			p.mu.Unlock()
			continue
		}
		if !p.admit(ctx, &entry{p: p, offset: m.Offset, size: len(m.Value), task: t}) {
			return
		}
	}
}

// admit queues e in its endpoint's lane, starting the lane if it was idle,
// once the partition's buffer has space; or skips e, leaving it for the
// lane's refill, when the lane already holds Config.LaneBuffer tasks or has
// skipped earlier ones. Skipping never waits, so a full lane never stops
// the partition's reader.
func (p *partition) admit(ctx context.Context, e *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if ctx.Err() != nil {
			return false
		}
		if l := p.lanes[e.task.EndpointID]; l != nil && (l.skipFrom >= 0 || l.held >= p.d.cfg.LaneBuffer) {
			if l.skipFrom < 0 {
				l.skipFrom = e.offset
			}
			p.next = e.offset + 1
			return true
		}
		if p.hasSpace(e.size) {
			break
		}
		p.space.Wait()
	}
	p.next = e.offset + 1
	l := p.lanes[e.task.EndpointID]
	if l == nil {
		l = &lane{endpoint: e.task.EndpointID, skipFrom: -1}
		p.lanes[e.task.EndpointID] = l
		p.d.m.lanes.Inc()
		go p.runLane(l)
	}
	p.hold(l, e)
	return true
}

// hasSpace reports whether an entry of size bytes fits in the buffer (an
// empty buffer takes any one entry). p.mu held.
func (p *partition) hasSpace(size int) bool {
	return p.count == 0 || p.count < p.d.cfg.PartitionBuffer && p.bytes+size <= p.d.cfg.PartitionBufferBytes
}

// hold adds e to the buffer and to the end of l's queue. p.mu held.
func (p *partition) hold(l *lane, e *entry) {
	e.lane = l
	heap.Push(&p.unfinished, e)
	p.count++
	p.bytes += e.size
	p.d.m.buffered.Inc()
	l.held++
	l.queue = append(l.queue, e)
}

// runLane attempts the lane's tasks one at a time, reading its skipped
// tasks again when its queue is empty, until it has nothing left or the
// partition stops (queued tasks are then abandoned: not committed).
func (p *partition) runLane(l *lane) {
	defer p.d.m.lanes.Dec()
	defer l.closeReader()
	for {
		p.mu.Lock()
		if p.lanesCtx.Err() != nil {
			p.dropLane(l)
			p.mu.Unlock()
			return
		}
		if len(l.queue) == 0 {
			if l.skipFrom < 0 {
				p.dropLane(l)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			if !p.refill(l) {
				p.mu.Lock()
				p.dropLane(l)
				p.mu.Unlock()
				return
			}
			continue
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
			p.dropLane(l) // its remaining tasks stay unfinished
			p.mu.Unlock()
			return
		}
	}
}

// dropLane removes an ending lane; the offset of tasks it skipped and did
// not read again stays the partition's floor, so they are not committed.
// p.mu held.
func (p *partition) dropLane(l *lane) {
	if p.lanes[l.endpoint] == l {
		delete(p.lanes, l.endpoint)
	}
	if f, ok := p.floors[l.endpoint]; l.skipFrom >= 0 && (!ok || l.skipFrom < f) {
		p.floors[l.endpoint] = l.skipFrom
	}
	p.space.Broadcast()
}

// refill reads the partition again from the lane's first skipped task
// and queues the endpoint's tasks (the others were taken by the
// partition's reader) until the lane holds Config.LaneBuffer tasks or the
// reader has caught up with the partition's reader; from then on the
// partition's reader queues the endpoint's tasks again. The reader stays
// open between calls while the lane is behind. False when the partition
// is stopping.
func (p *partition) refill(l *lane) bool {
	d := p.d
	if p.stopping.Err() != nil {
		return false
	}
	p.mu.Lock()
	pos := l.skipFrom
	p.mu.Unlock()
	if l.reader != nil && (l.pending == nil || l.pending.Offset != pos || time.Since(l.parkedAt) > refillIdle) {
		l.closeReader() // not where the last refill stopped, or idle too long: start over
	}
	if l.reader == nil {
		l.reader = kafka.NewReader(kafka.ReaderConfig{
			Brokers: d.cfg.Kafka.BrokerList(), Topic: p.topic, Partition: p.id,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 64,
			Dialer: &kafka.Dialer{Timeout: d.cfg.Kafka.DialTimeout},
		})
		if err := l.reader.SetOffset(pos); err != nil {
			p.log.Error("set refill offset", "offset", pos, "err", err)
			l.closeReader()
			return false
		}
		d.m.refills.Inc()
	}
	backoff := retry.Backoff{Max: maxFetchBackoff}
	for {
		p.mu.Lock()
		if pos >= p.next {
			// Every task the partition's reader skipped has been read again.
			l.skipFrom = -1
			p.mu.Unlock()
			l.closeReader()
			return true
		}
		p.mu.Unlock()
		var m kafka.Message
		if l.pending != nil {
			m, l.pending = *l.pending, nil
		} else {
			var err error
			m, err = l.reader.FetchMessage(p.stopping)
			if err != nil {
				if p.stopping.Err() != nil {
					return false
				}
				wait := backoff.Next()
				p.log.Warn("refill fetch failed, retrying", "endpoint", l.endpoint, "err", err, "retry_in", wait)
				if !retry.Sleep(p.stopping, wait) {
					return false
				}
				continue
			}
			backoff.Reset()
			d.m.refillReads.Inc()
		}
		t, err := schemas.ParseTask(m)
		if err != nil || t.EndpointID != l.endpoint {
			pos = m.Offset + 1 // not this lane's: the partition's reader took it
			continue
		}
		p.mu.Lock()
		for l.held >= d.cfg.LaneBuffer || !p.hasSpace(len(m.Value)) {
			if len(l.queue) > 0 || p.stopping.Err() != nil || p.lanesCtx.Err() != nil {
				// Full: work through the queue, then go on from here
				// (or stop, leaving this task unread).
				l.skipFrom = m.Offset
				l.pending, l.parkedAt = &m, time.Now()
				stopped := len(l.queue) == 0
				p.mu.Unlock()
				return !stopped
			}
			p.space.Wait() // the lane's earlier tasks' writes, or other lanes, finish
		}
		p.hold(l, &entry{p: p, offset: m.Offset, size: len(m.Value), task: t})
		pos = m.Offset + 1
		l.skipFrom = pos // at most the lowest skipped offset not yet read again
		p.mu.Unlock()
	}
}

// finish marks e done and takes it out of the buffer.
func (p *partition) finish(e *entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.state != active {
		return
	}
	p.active--
	e.state = done
	heap.Remove(&p.unfinished, e.index)
	p.count--
	p.bytes -= e.size
	if e.lane != nil {
		e.lane.held--
	}
	p.d.m.buffered.Dec()
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

// commitState is the lowest unfinished offset, or -1 when none is known
// (the lowest of the unfinished entries in memory, the lanes' first skipped
// tasks, the stopped lanes' floors and the next offset to read), with the
// resume record of what is unfinished above it.
func (p *partition) commitState() (int64, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	low := p.next
	lows := map[string]int64{}
	lower := func(endpoint string, o int64) {
		if o < 0 {
			return
		}
		if low < 0 || o < low {
			low = o
		}
		if cur, ok := lows[endpoint]; !ok || o < cur {
			lows[endpoint] = o
		}
	}
	for _, e := range p.unfinished {
		lower(e.task.EndpointID, e.offset)
	}
	for ep, l := range p.lanes {
		lower(ep, l.skipFrom)
	}
	for ep, o := range p.floors {
		lower(ep, o)
	}
	if low < 0 || p.next < 0 {
		return low, ""
	}
	return low, encodeResume(p.next, lows)
}

func (p *partition) commitFinal(gen *kafka.Generation) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	off, meta := p.commitState()
	if off < 0 || off == p.committed && meta == p.committedMeta {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.d.commit(ctx, gen, map[string][]kafka.OffsetCommit{p.topic: {{Partition: p.id, Offset: off, Metadata: meta}}}); err != nil {
		p.log.Warn("final commit failed; the uncommitted tasks will be delivered again", "offset", off, "err", err)
		return
	}
	p.committed, p.committedMeta = off, meta
	p.log.Debug("committed on release", "offset", off)
}

// commitLoop commits every partition's lowest unfinished offset, with its
// resume record, in one request per interval, until the generation ends.
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
	commits := map[string][]kafka.OffsetCommit{}
	type change struct {
		p    *partition
		off  int64
		meta string
	}
	var changed []change
	for _, p := range parts {
		off, meta := p.commitState()
		if off < 0 || off == p.committed && meta == p.committedMeta {
			continue
		}
		commits[p.topic] = append(commits[p.topic], kafka.OffsetCommit{Partition: p.id, Offset: off, Metadata: meta})
		changed = append(changed, change{p, off, meta})
	}
	if len(changed) == 0 {
		return
	}
	if err := d.commit(ctx, gen, commits); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("commit failed, retrying next interval", "err", err)
		}
		return
	}
	for _, c := range changed {
		c.p.committed, c.p.committedMeta = c.off, c.meta
	}
}

// entryHeap orders unfinished entries by offset (container/heap).
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].offset < h[j].offset }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
