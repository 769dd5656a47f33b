package dispatcher_test

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// addEndpoint is receiver.add for an endpoint with options: ep gives the
// URL (default: this receiver's path for name), rate limit and filter;
// headers are its static headers.
func (r *receiver) addEndpoint(t testing.TB, s *endpoint.Store, name string, ep schemas.Endpoint, b behaviour, headers ...endpoint.Header) *endpoint.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep.AccountID, ep.Events, ep.Active = "acct_test", []string{"document.*"}, true
	if ep.URL == "" {
		ep.URL = r.url(name)
	}
	e, secret, err := s.Create(ctx, ep, headers...)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.eps[name] = &recvEndpoint{id: e.ID, secret: secret, verifier: wh, behave: b}
	r.mu.Unlock()
	return e
}

// seen records one header of every request an endpoint got, and the
// request's remote address.
type seen struct {
	mu      sync.Mutex
	values  [][]string // per request: the values of the watched headers ("<none>" when absent)
	remotes []string
}

func (s *seen) watch(names ...string) behaviour {
	return func(_ int, ctx *fasthttp.RequestCtx) {
		var vs []string
		for _, n := range names {
			v := ctx.Request.Header.Peek(n)
			if v == nil {
				vs = append(vs, "<none>")
			} else {
				vs = append(vs, string(v))
			}
		}
		s.mu.Lock()
		s.values = append(s.values, vs)
		s.remotes = append(s.remotes, ctx.RemoteAddr().String())
		s.mu.Unlock()
		ctx.SetStatusCode(200)
	}
}

func (s *seen) snapshot() ([][]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.values...), append([]string(nil), s.remotes...)
}

// An endpoint's static headers reach its receiver with every delivery,
// beside the signed system headers (the receiver verifies both signatures);
// another endpoint of the same receiver gets none of them; a change of the
// headers applies to the deliveries after it.
func TestEndpointHeadersReachTheReceiver(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	var withH, without seen
	names := []string{"Authorization", "X-Tenant", "X-Zaits-Event", "Content-Type"}
	a := recv.addEndpoint(t, store, "with", schemas.Endpoint{}, withH.watch(names...),
		endpoint.Header{Name: "Authorization", Value: "Bearer tok_0123456789abcdef"}, endpoint.Header{Name: "X-Tenant", Value: "acme"})
	b := recv.addEndpoint(t, store, "without", schemas.Endpoint{}, without.watch(names...))
	startDispatcher(t, testConfig(kc))
	p := newProducer(t, kc)
	p.send(t, interleaved(20, []*endpoint.Entry{a, b})...)
	eventually(t, 30*time.Second, func() error {
		if n := recv.total.Load(); n < 40 {
			return fmt.Errorf("%d of 40 deliveries", n)
		}
		return nil
	})
	f := func(s *seen, n int, want string) {
		t.Helper()
		got, _ := s.snapshot()
		if len(got) < n {
			t.Fatalf("%d requests, want %d", len(got), n)
		}
		for i, vs := range got[:n] {
			if strings.Join(vs, "|") != want {
				t.Fatalf("request %d carries %q, want %q", i, strings.Join(vs, "|"), want)
			}
		}
	}
	f(&withH, 20, "Bearer tok_0123456789abcdef|acme|document.signed|application/json")
	f(&without, 20, "<none>|<none>|document.signed|application/json")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := store.Update(ctx, a.AccountID, a.ID, 0, func(ep *schemas.Endpoint) error {
		ep.Headers = store.SealHeaders(ep.ID, []endpoint.Header{{Name: "X-Tenant", Value: "beta"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var more []schemas.Task
	for seq := 20; seq < 25; seq++ {
		more = append(more, task(a, seq))
	}
	p.send(t, more...)
	eventually(t, 30*time.Second, func() error {
		if got, _ := withH.snapshot(); len(got) < 25 {
			return fmt.Errorf("%d of 25", len(got))
		}
		return nil
	})
	got, _ := withH.snapshot()
	for i, vs := range got[20:25] {
		if strings.Join(vs, "|") != "<none>|beta|document.signed|application/json" {
			t.Fatalf("request %d after the change carries %q", 20+i, strings.Join(vs, "|"))
		}
	}
}

// A 5/s endpoint and an unlimited one share the only partition of
// <p>.deliveries. At the receiver, no second carries more than 5 attempts
// to the limited endpoint (first attempts and retries, which come from the
// delay topics' lanes: every third task fails once), it still gets about 5/s,
// its order holds, and the unlimited endpoint is not slowed: all its
// deliveries arrive while the limited one has barely started.
func TestRateLimitSpacesAttemptsAtTheReceiver(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 1 })
	store := startStore(t, kc)
	recv := startReceiver(t)
	var mu sync.Mutex
	succeeded := map[string]bool{}
	failOnce := map[string]bool{} // delivery ids whose first attempt fails
	limited := recv.addEndpoint(t, store, "limited", schemas.Endpoint{RateLimit: 5}, func(n int, ctx *fasthttp.RequestCtx) {
		id := string(ctx.Request.Header.Peek("X-Zaits-Delivery"))
		mu.Lock()
		defer mu.Unlock()
		if failOnce[id] {
			delete(failOnce, id)
			ctx.SetStatusCode(500)
			return
		}
		succeeded[id] = true
		ctx.SetStatusCode(200)
	})
	free := recv.addEndpoint(t, store, "free", schemas.Endpoint{}, nil)
	reg := prometheus.NewRegistry()
	attempts := followAttempts(t, kc)
	startDispatcherWith(t, testConfig(kc), reg)
	p := newProducer(t, kc)
	const nLimited, nFree = 30, 300
	var ts []schemas.Task
	for i := range nFree {
		if i%(nFree/nLimited) == 0 {
			lt := task(limited, i/(nFree/nLimited))
			if i/(nFree/nLimited)%3 == 2 {
				mu.Lock()
				failOnce[lt.DeliveryID] = true
				mu.Unlock()
			}
			ts = append(ts, lt)
		}
		ts = append(ts, task(free, i))
	}
	p.send(t, ts...)
	eventually(t, 60*time.Second, func() error {
		mu.Lock()
		n := len(succeeded)
		mu.Unlock()
		if n < nLimited || len(recv.ledger("free")) < nFree {
			return fmt.Errorf("limited: %d of %d succeeded; free: %d of %d", n, nLimited, len(recv.ledger("free")), nFree)
		}
		return nil
	})
	lim, fr := recv.ledger("limited"), recv.ledger("free")
	sort.Slice(lim, func(i, j int) bool { return lim[i].at.Before(lim[j].at) })
	// The dispatcher's side, exactly: no second holds 6 attempt starts.
	eventually(t, 10*time.Second, func() error {
		if n := len(attempts.forEndpoint(limited.ID)); n < len(lim) {
			return fmt.Errorf("%d of %d attempt records", n, len(lim))
		}
		return nil
	})
	starts := attempts.forEndpoint(limited.ID)
	sort.Slice(starts, func(i, j int) bool { return starts[i].AttemptedAt.Before(starts[j].AttemptedAt) })
	for i := 0; i+5 < len(starts); i++ {
		if d := starts[i+5].AttemptedAt.Sub(starts[i].AttemptedAt); d < time.Second {
			t.Fatalf("attempts %d and %d to the 5/s endpoint started %v apart: 6 within a second", i, i+5, d)
		}
	}
	// The receiver's side: the same, allowing the arrivals 10 ms of
	// network-delay variation beyond the 20 ms the limiter keeps in hand.
	const jitter = 10 * time.Millisecond
	for i := 0; i+5 < len(lim); i++ {
		if d := lim[i+5].at.Sub(lim[i].at); d < time.Second-jitter {
			t.Fatalf("attempts %d and %d to the 5/s endpoint arrived %v apart: 6 within a second", i, i+5, d)
		}
	}
	first, last := lim[0].at, lim[len(lim)-1].at
	perSecond := map[int64]int{} // per wall-clock second, as the receiver counts
	var secs []int64
	for _, a := range lim {
		s := a.at.Unix()
		if perSecond[s] == 0 {
			secs = append(secs, s)
		}
		perSecond[s]++
	}
	var counts []int
	for _, s := range secs {
		counts = append(counts, perSecond[s])
	}
	span := last.Sub(first)
	t.Logf("5/s endpoint: %d attempts (%d tasks, the rest retries) in %v, per second at the receiver: %v", len(lim), nLimited, span.Round(time.Millisecond), counts)
	if len(lim) <= nLimited {
		t.Fatalf("%d attempts for %d tasks: no retries were made", len(lim), nLimited)
	}
	// Not slower than the limit needs (retries wait 400 ms–1.6 s in their
	// delay topics, and the machine is shared: generous bounds).
	if min := time.Duration(len(lim)-5) * time.Second / 5; span < min-jitter || span > 2*min+5*time.Second {
		t.Fatalf("%d attempts took %v; at 5/s they take at least %v", len(lim), span, min)
	}
	// Order holds: the first attempts (each task's first arrival; its
	// retries come later) arrive in sequence order.
	firsts := map[int]bool{}
	next := 0
	for _, a := range lim {
		if firsts[a.seq] {
			continue
		}
		firsts[a.seq] = true
		if a.seq != next {
			t.Fatalf("first attempt of task %d arrived when task %d was next", a.seq, next)
		}
		next++
	}
	// The unlimited endpoint is not held back: its 300 deliveries all
	// arrive before the limited endpoint's 11th attempt (2 s in).
	sort.Slice(fr, func(i, j int) bool { return fr[i].at.Before(fr[j].at) })
	if fl := fr[len(fr)-1].at; !fl.Before(lim[10].at) {
		t.Fatalf("the unlimited endpoint's last delivery came %v after the limited one's first: it was held back", fl.Sub(first))
	}
	t.Logf("unlimited endpoint: %d deliveries in %v", len(fr), fr[len(fr)-1].at.Sub(fr[0].at).Round(time.Millisecond))
	if v := metricValue(t, reg, "zaits_dispatcher_rate_limited_total", nil); v == 0 {
		t.Fatal("zaits_dispatcher_rate_limited_total did not count the waits")
	}
}

// Deliveries through an HTTP CONNECT proxy (a real one on loopback): every
// request reaches the receiver through a tunnel the proxy opened, each
// CONNECT names the address the guard checked (never the host name, so the
// proxy's own DNS answer plays no part), and a target the guard refuses is
// still refused: the proxy is never asked for it.
func TestDeliveriesGoThroughTheProxy(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t) // 127.0.0.1
	_, port, _ := net.SplitHostPort(recv.ln.Addr().String())
	proxy := testenv.StartConnectProxy(t, "zaits", "s3cret")
	var via seen
	// "localhost" resolves to 127.0.0.1 (allowed below) and ::1 (refused).
	viaEp := recv.addEndpoint(t, store, "via", schemas.Endpoint{URL: "http://localhost:" + port + "/e/via"}, via.watch("Host"))
	// 127.0.0.2 is loopback too, reachable, and not allowed.
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	var otherHits atomic.Int64
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			otherHits.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { other.Close() })
	blocked := recv.addEndpoint(t, store, "blocked", schemas.Endpoint{URL: "http://" + other.Addr().String() + "/e/blocked"}, nil)
	attempts := followAttempts(t, kc)
	cfg := testConfig(kc)
	cfg.Delivery = &dispatcher.ClientConfig{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: 2 * time.Second,
		Proxy: proxy.URL("zaits", "s3cret")}
	startDispatcher(t, cfg)
	p := newProducer(t, kc)
	var ts []schemas.Task
	for seq := range 50 {
		ts = append(ts, task(viaEp, seq))
	}
	ts = append(ts, task(blocked, 0))
	p.send(t, ts...)
	eventually(t, 30*time.Second, func() error {
		if got, _ := via.snapshot(); len(got) < 50 {
			return fmt.Errorf("%d of 50 through the proxy", len(got))
		}
		if len(attempts.forEndpoint(blocked.ID)) == 0 {
			return errors.New("no attempt record for the refused endpoint yet")
		}
		return nil
	})
	hosts, remotes := via.snapshot()
	for i, r := range remotes {
		if !proxy.Tunnelled(r) {
			t.Fatalf("request %d came from %s, not through the proxy", i, r)
		}
		if hosts[i][0] != "localhost:"+port {
			t.Fatalf("request %d has Host %q, want the endpoint's own", i, hosts[i][0])
		}
	}
	if proxy.Connects.Load() == 0 || proxy.Refused.Load() != 0 {
		t.Fatalf("%d CONNECTs, %d refused", proxy.Connects.Load(), proxy.Refused.Load())
	}
	for _, target := range proxy.Targets() {
		if target != "127.0.0.1:"+port {
			t.Fatalf("the proxy was asked for %q; want only the checked address 127.0.0.1:%s", target, port)
		}
	}
	a := attempts.forEndpoint(blocked.ID)[0]
	if a.ErrorCode != schemas.ErrCodeAddressRefused || !strings.Contains(a.Error, "127.0.0.2 is loopback") || otherHits.Load() != 0 {
		t.Fatalf("the refused endpoint's attempt: %+v (%d connections to it)", a, otherHits.Load())
	}
	t.Logf("50 deliveries through %d CONNECT tunnels", proxy.Connects.Load())
}

// The client's proxy dialing without Kafka: TLS inside the tunnel (SNI and
// certificate checks unchanged), the proxy's refusals and absence as
// connection errors, refused targets never sent to the proxy, and the
// configuration's checks.
func TestProxyDialing(t *testing.T) {
	cert, pool := selfSigned(t)
	tlsSrv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, &cert)
	plain := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, nil)
	_, plainPort, _ := net.SplitHostPort(plain.ln.Addr().String())
	proxy := testenv.StartConnectProxy(t, "", "")
	c := newClient(t, func(c *dispatcher.ClientConfig) {
		c.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.TLSConfig = &tls.Config{RootCAs: pool}
		c.Proxy = proxy.URL("", "")
	})
	f := func(c *dispatcher.Client, url, wantCode, wantErr string) {
		t.Helper()
		res := c.Deliver(context.Background(), dispatcher.Request{URL: url, Body: []byte(`{}`)})
		if res.ErrCode != wantCode || (wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), wantErr))) {
			t.Fatalf("%s: %q %v, want %q %q", url, res.ErrCode, res.Err, wantCode, wantErr)
		}
	}
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.ln.Addr().String())
	f(c, "https://localhost:"+tlsPort+"/hook", "", "") // the certificate names localhost: verified through the tunnel
	f(c, plain.url("http"), "", "")
	if got := proxy.Targets(); len(got) != 2 || got[0] != "127.0.0.1:"+tlsPort || got[1] != plain.ln.Addr().String() {
		t.Fatalf("CONNECT targets %v, want the checked addresses of 2 hosts", got)
	}
	// Refused by the guard before the proxy is asked: a name resolving to
	// loopback outside the allow-list (only 127.0.0.2 allowed here), a
	// loopback, a private and a metadata address.
	only2 := newClient(t, func(c *dispatcher.ClientConfig) {
		c.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.Proxy = proxy.URL("", "")
	})
	f(only2, "http://localhost:"+plainPort+"/", schemas.ErrCodeAddressRefused, "127.0.0.1 is loopback")
	f(c, "http://127.0.0.2:"+plainPort+"/", schemas.ErrCodeAddressRefused, "")
	f(c, "http://10.0.0.1:9/", schemas.ErrCodeAddressRefused, "")
	f(c, "http://169.254.169.254/latest/meta-data/", schemas.ErrCodeAddressRefused, "")
	if n := proxy.Connects.Load(); n != 2 {
		t.Fatalf("the proxy was asked for a refused target (%d CONNECTs): %v", n, proxy.Targets())
	}
	// The proxy refuses a target, wants credentials, or is not there.
	denied := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, nil)
	proxy.Deny(denied.ln.Addr().String())
	f(c, denied.url("http"), schemas.ErrCodeConnection, "403 Forbidden")
	authed := testenv.StartConnectProxy(t, "u", "right")
	wrong := newClient(t, func(c *dispatcher.ClientConfig) { c.Proxy = authed.URL("u", "wrong") })
	f(wrong, plain.url("http"), schemas.ErrCodeConnection, "407 Proxy Authentication Required")
	if strings.Contains(wrong.Deliver(context.Background(), dispatcher.Request{URL: plain.url("http")}).Err.Error(), "wrong") {
		t.Fatal("the proxy password is in the error")
	}
	right := newClient(t, func(c *dispatcher.ClientConfig) { c.Proxy = authed.URL("u", "right") })
	f(right, plain.url("http"), "", "")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := "http://" + ln.Addr().String()
	ln.Close()
	f(newClient(t, func(c *dispatcher.ClientConfig) { c.Proxy = gone }), plain.url("http"), schemas.ErrCodeConnection, "egress proxy")

	// Configuration: the flag takes an http proxy URL and never shows its password.
	var cfg dispatcher.ClientConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-delivery.proxy=http://smoke:pw@10.1.2.3:4750"}); err != nil || cfg.Proxy != "http://smoke:pw@10.1.2.3:4750" {
		t.Fatalf("parse: %v %q", err, cfg.Proxy)
	}
	if s := fs.Lookup("delivery.proxy").Value.String(); strings.Contains(s, "pw") || !strings.Contains(s, "10.1.2.3:4750") {
		t.Fatalf("logged as %q", s)
	}
	for _, bad := range []string{"https://proxy:443", "proxy:4750", "http://proxy", "http://proxy:4750/path", "socks5://proxy:1080", "http://:4750"} {
		if err := fs.Parse([]string{"-delivery.proxy=" + bad}); err == nil {
			t.Errorf("-delivery.proxy=%s accepted", bad)
		}
		if err := (&dispatcher.ClientConfig{Proxy: bad}).Validate(); err == nil || !strings.Contains(err.Error(), "delivery.proxy") {
			t.Errorf("Validate(Proxy: %s) = %v", bad, err)
		}
	}
}
