package gateway

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxTrackedAddrs bounds the client addresses the failed-authentication
// limiter remembers (about 100 bytes each: ~6.5 MB at most).
const maxTrackedAddrs = 65536

// authFailures limits failed authentications per client address: a token
// bucket per address (an IPv4 address, an IPv6 /64) that earns rate
// failures per second up to burst. While an address's bucket is empty,
// every request from it that needs a key is refused with 429 before its
// key is looked at, so that guessing keys learns nothing. The zero rate
// (or less) disables it. Memory is bounded: at most maxTrackedAddrs
// addresses; a full table first forgets the addresses whose buckets are
// full again (they are as good as new), then arbitrary ones.
type authFailures struct {
	rate, burst float64
	max         int
	now         func() time.Time

	size atomic.Int64 // len(buckets): lets the common case skip the lock

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	lastSweep time.Time
}

func newAuthFailures(rate float64, burst int) *authFailures {
	return &authFailures{rate: rate, burst: float64(burst), max: maxTrackedAddrs, now: time.Now, buckets: map[netip.Prefix]*bucket{}}
}

// addrKey is the bucket of a client address: the address itself for IPv4,
// its /64 for IPv6 (one host usually has a whole /64).
func addrKey(ip net.IP) netip.Prefix {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, 32)
}

// refill brings b up to now; the caller holds mu.
func (a *authFailures) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(a.burst, b.tokens+now.Sub(b.last).Seconds()*a.rate)
	b.last = now
}

func (a *authFailures) wait(b *bucket) int {
	return max(1, int(math.Ceil((1-b.tokens)/a.rate)))
}

// blocked reports whether ip has no failed authentication left, and the
// whole seconds until it has one (Retry-After).
func (a *authFailures) blocked(ip net.IP) (retryAfter int, blocked bool) {
	if a.rate <= 0 || a.size.Load() == 0 {
		return 0, false
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buckets[addrKey(ip)]
	if b == nil {
		return 0, false
	}
	a.refill(b, now)
	if b.tokens >= 1 {
		return 0, false
	}
	return a.wait(b), true
}

// failed records a failed authentication of ip. It reports false, with the
// Retry-After, when ip had none left: the request is answered 429.
func (a *authFailures) failed(ip net.IP) (retryAfter int, ok bool) {
	if a.rate <= 0 {
		return 0, true
	}
	now := a.now()
	key := addrKey(ip)
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buckets[key]
	if b == nil {
		a.makeRoom(now)
		b = &bucket{tokens: a.burst, last: now}
		a.buckets[key] = b
		a.size.Store(int64(len(a.buckets)))
	}
	a.refill(b, now)
	if b.tokens < 1 {
		return a.wait(b), false
	}
	b.tokens--
	return 0, true
}

// makeRoom keeps the table under max entries; the caller holds mu.
func (a *authFailures) makeRoom(now time.Time) {
	if len(a.buckets) < a.max {
		return
	}
	if now.Sub(a.lastSweep) >= time.Second { // a sweep costs a pass over the table: at most once a second
		a.lastSweep = now
		for k, b := range a.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*a.rate >= a.burst {
				delete(a.buckets, k)
			}
		}
	}
	for k := range a.buckets {
		if len(a.buckets) < a.max {
			break
		}
		delete(a.buckets, k)
	}
}
