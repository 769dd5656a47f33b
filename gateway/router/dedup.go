package router

import (
	"hash/maphash"
	"time"
)

// dedupWindow is the idempotency window of one partition of <p>.events:
// the (account, event id) pairs the router routed recently, so that an
// event published twice yields one set of delivery tasks.
//
// Bounds. An id stays in the window for `window` (by the Kafka timestamps
// of the events, so the state depends on the log only) or until `capacity`
// newer ids pushed it out, whichever comes first. An entry costs about 32
// bytes (an 8-byte hash in a set and a 16-byte queue entry), so memory is at
// most ~32 × capacity bytes. The window is shorter than `window` only when
// a partition receives more than capacity/window events; Age reports the
// window actually in force.
//
// Restarts. The window lives in memory, so a router that takes over a
// partition (start, restart, rebalance) rebuilds it by re-reading the
// partition's last `window` of events (at most `capacity` of them) up to
// the committed offset before routing anything: a duplicate is recognised
// across restarts just as within one run. Events after the committed
// offset are routed again (at-least-once); their delivery ids are
// deterministic, so such repeats are identical and receivers deduplicate.
//
// Ids are compared by a 64-bit hash: two different ids collide with
// probability about capacity/2^64 per event, which is negligible.
type dedupWindow struct {
	window   time.Duration
	capacity int
	seed     maphash.Seed

	set   map[uint64]struct{}
	queue []dedupEntry // oldest first, from head
	head  int
}

type dedupEntry struct {
	hash uint64
	at   int64 // unix milliseconds
}

func newDedupWindow(window time.Duration, capacity int) *dedupWindow {
	return &dedupWindow{window: window, capacity: max(capacity, 1), seed: maphash.MakeSeed(), set: map[uint64]struct{}{}}
}

// Seen reports whether the event (account, id) is in the window; if it is
// not, it is added with the event's time t.
func (d *dedupWindow) Seen(account, id string, t time.Time) bool {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(account)
	h.WriteByte(0)
	h.WriteString(id)
	sum := h.Sum64()
	ms := t.UnixMilli()
	d.expire(ms)
	if _, ok := d.set[sum]; ok {
		return true
	}
	for d.Len() >= d.capacity {
		d.pop()
	}
	d.set[sum] = struct{}{}
	d.queue = append(d.queue, dedupEntry{hash: sum, at: ms})
	return false
}

// expire drops entries older than the window before now (unix ms).
func (d *dedupWindow) expire(now int64) {
	limit := now - d.window.Milliseconds()
	for d.Len() > 0 && d.queue[d.head].at < limit {
		d.pop()
	}
}

func (d *dedupWindow) pop() {
	delete(d.set, d.queue[d.head].hash)
	d.head++
	if d.head >= 1024 && d.head*2 >= len(d.queue) {
		n := copy(d.queue, d.queue[d.head:])
		d.queue = d.queue[:n]
		d.head = 0
	}
}

// Len is the number of ids in the window.
func (d *dedupWindow) Len() int { return len(d.queue) - d.head }

// Age is the time between the oldest and the newest id in the window: the
// window in force, shorter than configured when capacity is the limit.
func (d *dedupWindow) Age() time.Duration {
	if d.Len() == 0 {
		return 0
	}
	return time.Duration(d.queue[len(d.queue)-1].at-d.queue[d.head].at) * time.Millisecond
}
