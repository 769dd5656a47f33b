package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
)

// Item 1: the connections served at once are capped: one more is answered
// 503 in the envelope (Retry-After) and closed; a place is free again
// when a connection closes.
func TestConnectionsAreCappedInAll(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t), func(c *Config) { c.Limits.MaxConns = 3 }))
	var open []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		fmt.Fprintf(c, "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(open), resp, err)
		}
	}
	resp, body, err := exchange(t, g.Addr(), "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n", false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantEnvelope(t, "GET", "/v1/openapi.json", resp, body, 503, "too_many_connections")
	if resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("503 without Retry-After: %v", resp.Header)
	}
	open[0].Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		resp, _, err := exchange(t, g.Addr(), "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n", false, 5*time.Second)
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("after a close: %v %v", resp, err)
		}
		return nil
	})
	for _, c := range open[1:] {
		c.Close()
	}
	_, metrics := get(t, "http://"+g.OpsAddr()+"/metrics")
	if !strings.Contains(metrics, `zaits_gateway_connections_refused_total{reason="total"}`) {
		t.Fatalf("metrics lack the refusals:\n%s", metrics)
	}
}

// Item 1: reading a request is bounded in time: its headers by
// HeaderTimeout, its body by BodyTimeout from the end of the headers. A
// client too slow is answered 400 (or cut off) when the time is up.
func TestSlowRequestsAreCutOff(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t), func(c *Config) {
		c.Limits.HeaderTimeout, c.Limits.BodyTimeout = 500*time.Millisecond, 700*time.Millisecond
	}))
	f := func(what, raw string, within time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, raw) // and then nothing more
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c) // the answer, if any, and the close
		if d := time.Since(start); d > within {
			t.Fatalf("%s: the server waited %s (> %s)", what, d, within)
		}
		if len(b) > 0 && !strings.Contains(string(b), `"success":false`) {
			t.Fatalf("%s: %q", what, b)
		}
	}
	f("half a header block", "GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\nAuthor", 3*time.Second)
	f("nothing at all", "", 3*time.Second)
	f("half a body", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "+svcKey+"\r\nContent-Length: 100\r\n\r\n{\"type\":", 3*time.Second)
	f("a chunked body without its end", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "+svcKey+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"typ\r\n", 3*time.Second)
}

// The failed-authentication limiter remembers a bounded number of client
// addresses, refills, and counts an IPv6 /64 as one address.
func TestAuthFailuresAreBoundedPerAddress(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAuthFailures(1, 2)
	a.now = func() time.Time { return now }
	a.max = 100
	ip := net.ParseIP("203.0.113.7")
	f := func(ip net.IP, wantOK bool, wantWait int) {
		t.Helper()
		wait, ok := a.failed(ip)
		if ok != wantOK || wait != wantWait {
			t.Fatalf("failed(%s) = %d %v; want %d %v", ip, wait, ok, wantWait, wantOK)
		}
	}
	f(ip, true, 0)
	f(ip, true, 0)
	f(ip, false, 1)
	if wait, blocked := a.blocked(ip); !blocked || wait != 1 {
		t.Fatalf("blocked = %d %v", wait, blocked)
	}
	now = now.Add(time.Second)
	if _, blocked := a.blocked(ip); blocked {
		t.Fatal("still blocked after a refill")
	}
	// One /64: the addresses of a host count together.
	f(net.ParseIP("2001:db8:1:2::1"), true, 0)
	f(net.ParseIP("2001:db8:1:2::ffff"), true, 0)
	f(net.ParseIP("2001:db8:1:2:8000::1"), false, 1)
	f(net.ParseIP("2001:db8:1:3::1"), true, 0)
	// Many addresses: the table never holds more than max.
	for i := range 1000 {
		a.failed(net.IPv4(10, 0, byte(i>>8), byte(i)))
		if n := len(a.buckets); n > a.max {
			t.Fatalf("%d addresses remembered, max %d", n, a.max)
		}
	}
	// Disabled: never blocks.
	off := newAuthFailures(-1, 10)
	for range 100 {
		if _, ok := off.failed(ip); !ok {
			t.Fatal("a disabled limiter refused")
		}
	}
}

func TestLimitsConfigValidation(t *testing.T) {
	f := func(l LimitsConfig, wantErr string) {
		t.Helper()
		err := l.withDefaults().validate()
		if (wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%+v: %v, want %q", l, err, wantErr)
		}
	}
	f(LimitsConfig{}, "")
	f(LimitsConfig{MaxConns: -1, MaxConnsPerIP: -1, AuthFailureRate: -1}, "")
	f(LimitsConfig{HeaderTimeout: time.Millisecond}, "gateway.header-timeout")
	f(LimitsConfig{BodyTimeout: time.Hour}, "gateway.body-timeout")
	f(LimitsConfig{AuthFailureRate: 2e6}, "gateway.auth-failure-rate")
	f(LimitsConfig{AuthFailureBurst: -1}, "gateway.auth-failure-burst")
	if d := (LimitsConfig{}).withDefaults(); d.MaxConns != 4096 || d.MaxConnsPerIP != 256 || d.HeaderTimeout != 10*time.Second || d.BodyTimeout != 30*time.Second || d.AuthFailureRate != 1 || d.AuthFailureBurst != 10 {
		t.Fatalf("defaults %+v", d)
	}
}

// serverLog removes from fasthttp's messages whatever the client sent.
func TestServerLogRedactsRequests(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := redactRequest(in); got != want {
			t.Errorf("redactRequest(%q) = %q, want %q", in, got, want)
		}
	}
	f(`error when serving connection "127.0.0.1:8080"<->"127.0.0.1:5000": error when reading request headers: invalid header value "Bearer zk_abc": buffer size=10, contents: "GET / HTTP/1.1\r\nAuthorization: Bearer zk_abc"`,
		`error when serving connection "127.0.0.1:8080"<->"127.0.0.1:5000": error when reading request headers: invalid header value "[redacted]": buffer size=10, contents: [redacted]`)
	f(`invalid request uri "/v1?key=zk_x"`, `invalid request uri "[redacted]"`)
	f(`token zst_ABC and whsec_DEF= and Bearer x.y`, `token [redacted] and [redacted] and [redacted]`)
	f(`The number of connections from 10.0.0.1 exceeds MaxConnsPerIP=256`, `The number of connections from 10.0.0.1 exceeds MaxConnsPerIP=256`)
}
