package gateway

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter is the public listener with caps on the connections served
// at once, in all and per client address (an IPv4 address, an IPv6 /64).
// A connection over a cap is answered at once with the error envelope —
// 503 too_many_connections over the total, 429 too_many_connections over
// its address's share, both with Retry-After — and closed before any of
// its request is read. A zero or negative cap is no cap.
type connLimiter struct {
	net.Listener
	max, perAddr int
	open         prometheus.Gauge
	refused      *prometheus.CounterVec // reason: total, per_address

	mu     sync.Mutex
	total  int
	byAddr map[any]int
}

func newConnLimiter(ln net.Listener, maxConns, perAddr int, reg prometheus.Registerer) *connLimiter {
	l := &connLimiter{Listener: ln, max: maxConns, perAddr: perAddr, byAddr: map[any]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "zaits_gateway_connections",
			Help: "Connections to the public API being served."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_gateway_connections_refused_total",
			Help: "Connections to the public API refused at once, by reason: total (-gateway.max-conns), per_address (-gateway.max-conns-per-ip)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(l.open, l.refused)
	}
	return l
}

// refusal is the whole answer to a refused connection.
func refusal(status int, text, message string) []byte {
	body := `{"success":false,"error":{"code":"too_many_connections","message":"` + message + `"}}`
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

var (
	refusedTotal   = refusal(503, "Service Unavailable", "the server has no room for another connection; retry shortly")
	refusedPerAddr = refusal(429, "Too Many Requests", "too many connections from this address; reuse keep-alive connections or retry shortly")
)

// Accept returns the next connection within the caps; the others are
// answered and closed here (writing ~200 bytes to a new connection does
// not block).
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var key any = c.RemoteAddr().String()
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			key = addrKey(ta.IP)
		}
		l.mu.Lock()
		var answer []byte
		switch {
		case l.max > 0 && l.total >= l.max:
			answer = refusedTotal
			l.refused.WithLabelValues("total").Inc()
		case l.perAddr > 0 && l.byAddr[key] >= l.perAddr:
			answer = refusedPerAddr
			l.refused.WithLabelValues("per_address").Inc()
		default:
			l.total++
			l.byAddr[key]++
		}
		l.mu.Unlock()
		if answer == nil {
			l.open.Inc()
			return &countedConn{Conn: c, l: l, key: key}, nil
		}
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(answer) //nolint:errcheck // the connection is refused either way
		c.Close()
	}
}

func (l *connLimiter) release(key any) {
	l.mu.Lock()
	l.total--
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
	l.mu.Unlock()
	l.open.Dec()
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	l      *connLimiter
	key    any
	closed atomic.Bool
}

// Lingering close: a connection the server closes while its client may
// still be sending (a body refused from its headers) is half-closed and
// drained for at most lingerTime and lingerBytes, as nginx does, so that
// the client reads the answer instead of a reset (Go's HTTP client reports
// the reset, not the 413, when it comes while the body is still being
// written); the drained bytes are discarded into a 4 KiB buffer.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 8 << 20
)

var lingerBufs = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}

func (c *countedConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		c.l.release(c.key)
		return c.Conn.Close()
	}
	go func() {
		defer c.l.release(c.key)
		defer tc.Close()
		tc.SetReadDeadline(time.Now().Add(lingerTime))
		bp := lingerBufs.Get().(*[]byte)
		defer lingerBufs.Put(bp)
		for n := 0; n < lingerBytes; {
			m, err := tc.Read(*bp)
			if err != nil {
				return
			}
			n += m
		}
	}()
	return nil
}
