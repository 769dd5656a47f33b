package gateway

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per API key: each key earns rate tokens per
// second up to burst; a request spends one.
type limiter struct {
	rate  float64 // tokens per second; 0 disables limiting
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// allow spends a token of key's bucket. When the bucket is empty it reports
// false and the whole seconds until a token is available (Retry-After).
func (l *limiter) allow(key string) (retryAfter int, ok bool) {
	if l.rate <= 0 {
		return 0, true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return max(1, int(math.Ceil((1-b.tokens)/l.rate))), false
}
