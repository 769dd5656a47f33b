package dispatcher_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// server is a fasthttp server on a loopback port that records what it got.
type server struct {
	ln       net.Listener
	srv      *fasthttp.Server
	requests atomic.Int64
	mu       sync.Mutex
	last     http.Header
	lastBody []byte
}

func startServer(t *testing.T, network, addr string, h fasthttp.RequestHandler, tlsCert *tls.Certificate) *server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if tlsCert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*tlsCert}})
	}
	s := &server{ln: ln}
	s.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		s.requests.Add(1)
		hdr := http.Header{}
		for k, v := range ctx.Request.Header.All() {
			hdr.Add(string(k), string(v))
		}
		s.mu.Lock()
		s.last, s.lastBody = hdr, append([]byte(nil), ctx.PostBody()...)
		s.mu.Unlock()
		h(ctx)
	}}
	go s.srv.Serve(ln)                     //nolint:errcheck
	t.Cleanup(func() { s.srv.Shutdown() }) //nolint:errcheck
	return s
}

func (s *server) url(scheme string) string { return scheme + "://" + s.ln.Addr().String() + "/hook" }

func newClient(t *testing.T, mutate func(*dispatcher.ClientConfig)) *dispatcher.Client {
	t.Helper()
	cfg := dispatcher.ClientConfig{AllowNetworks: loopback}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := dispatcher.NewClient(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeliverSignsWithSeedAndStandardWebhooks(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(204) }, nil)
	c := newClient(t, nil)
	current, old := endpoint.NewSecret(), endpoint.NewSecret()
	body := []byte(`{"id":"evt_1","type":"document.signed","created":1642251600,"data":{"a":"ü"}}`)
	res := c.Deliver(context.Background(), dispatcher.Request{
		URL: srv.url("http"), Body: body, EventType: "document.signed", DeliveryID: "del_abc",
		Secrets: [][]byte{[]byte(current), []byte(old)},
	})
	if !res.OK() || res.Status != 204 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	srv.mu.Lock()
	h, got := srv.last, srv.lastBody
	srv.mu.Unlock()
	if string(got) != string(body) {
		t.Fatalf("body %q, want %q", got, body)
	}
	f := func(name, want string) {
		t.Helper()
		if h.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, h.Get(name), want)
		}
	}
	f("Content-Type", "application/json")
	f("User-Agent", "Zaits-Webhooks/1.0")
	f("X-Zaits-Event", "document.signed")
	f("X-Zaits-Delivery", "del_abc")
	f("Webhook-Id", "del_abc")
	// The seed's verification snippet: hex HMAC-SHA256 keyed with the secret
	// string. During a rotation's overlap X-Zaits-Signature is the previous
	// secret's (receivers that have not switched keep verifying) and
	// X-Zaits-Signature-New the current one's.
	seed := func(secret string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	f("X-Zaits-Signature", seed(old))
	f("X-Zaits-Signature-New", seed(current))
	// The official Standard Webhooks Go library, from the customer's secret string.
	for _, s := range []string{current, old} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatalf("standard webhooks verifier rejects secret %q: %v", s, err)
		}
		if err := wh.Verify(got, h); err != nil {
			t.Errorf("standard webhooks verification with %q: %v (headers %v)", s, err, h)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(endpoint.NewSecret())
	if err := wh.Verify(got, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("an unrelated secret verifies: %v", err)
	}
	if n := len(strings.Fields(h.Get("Webhook-Signature"))); n != 2 {
		t.Errorf("%d webhook-signature entries during rotation, want 2", n)
	}

	// One secret (no rotation, or after the overlap): X-Zaits-Signature is
	// its signature, and there is no X-Zaits-Signature-New.
	if res := c.Deliver(context.Background(), dispatcher.Request{
		URL: srv.url("http"), Body: body, EventType: "document.signed", DeliveryID: "del_abc", Secrets: [][]byte{[]byte(current)},
	}); !res.OK() {
		t.Fatalf("result %+v", res)
	}
	srv.mu.Lock()
	h = srv.last
	srv.mu.Unlock()
	f("X-Zaits-Signature", seed(current))
	f("X-Zaits-Signature-New", "")
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receiver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestDeliverClassifiesResults(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	handlers := map[string]fasthttp.RequestHandler{
		"/ok":       func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200); ctx.SetBodyString("fine") },
		"/redirect": func(ctx *fasthttp.RequestCtx) { ctx.Redirect("/ok", 302) },
		"/error":    func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500); ctx.SetBodyString(long) },
		"/busy": func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Retry-After", "120")
			ctx.SetStatusCode(429)
		},
		"/hang": func(ctx *fasthttp.RequestCtx) { time.Sleep(2 * time.Second) },
	}
	srv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) {
		handlers[string(ctx.Path())](ctx)
	}, nil)
	base := "http://" + srv.ln.Addr().String()
	cert, pool := selfSigned(t)
	tlsSrv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, &cert)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/"
	closed.Close()

	c := newClient(t, func(c *dispatcher.ClientConfig) { c.Timeout = 300 * time.Millisecond; c.ExcerptBytes = 1001 })
	trusting := newClient(t, func(c *dispatcher.ClientConfig) { c.TLSConfig = &tls.Config{RootCAs: pool} })
	f := func(name string, c *dispatcher.Client, url string, wantStatus int, wantCode string, check func(dispatcher.Result) error) {
		t.Helper()
		res := c.Deliver(context.Background(), dispatcher.Request{URL: url, Body: []byte(`{}`), DeliveryID: "del_x", EventType: "x", Secrets: [][]byte{[]byte("whsec_x")}})
		if res.Status != wantStatus || res.ErrCode != wantCode || (wantCode == "") != (res.Err == nil) {
			t.Errorf("%s: status %d code %q err %v, want %d %q", name, res.Status, res.ErrCode, res.Err, wantStatus, wantCode)
			return
		}
		if check != nil {
			if err := check(res); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	f("2xx", c, base+"/ok", 200, "", func(r dispatcher.Result) error {
		if r.Excerpt != "fine" {
			return errors.New("excerpt " + r.Excerpt)
		}
		return nil
	})
	f("3xx is a failure, not followed", c, base+"/redirect", 302, schemas.ErrCodeHTTPStatus, nil)
	f("5xx with a long body", c, base+"/error", 500, schemas.ErrCodeHTTPStatus, func(r dispatcher.Result) error {
		if len(r.Excerpt) != 1000 || r.Excerpt != long[:1000] {
			return errors.New("excerpt not cut at a rune boundary within 1001 bytes: " + r.Excerpt[len(r.Excerpt)-4:])
		}
		return nil
	})
	f("429 with Retry-After", c, base+"/busy", 429, schemas.ErrCodeHTTPStatus, func(r dispatcher.Result) error {
		if r.RetryAfter != 120*time.Second {
			return errors.New("retry-after " + r.RetryAfter.String())
		}
		return nil
	})
	f("timeout", c, base+"/hang", 0, schemas.ErrCodeTimeout, func(r dispatcher.Result) error {
		if r.Latency > 2*time.Second {
			return errors.New("took " + r.Latency.String())
		}
		return nil
	})
	f("connection refused", c, closedURL, 0, schemas.ErrCodeConnection, nil)
	f("untrusted certificate", c, tlsSrv.url("https"), 0, schemas.ErrCodeTLS, nil)
	f("trusted certificate", trusting, tlsSrv.url("https"), 200, "", nil)
	if n := srv.requests.Load(); n != 5 {
		t.Errorf("server got %d requests, want 5 (no redirect followed, no retry)", n)
	}
}

func TestDeliverReadsAtMostMaxResponseBytes(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500); ctx.SetBodyString(big) }, nil)
	c := newClient(t, func(c *dispatcher.ClientConfig) { c.MaxResponseBytes = 100; c.ExcerptBytes = 50 })
	for range 3 { // the connection with an unread body is discarded, never reused half-read
		res := c.Deliver(context.Background(), dispatcher.Request{URL: srv.url("http"), Body: []byte(`{}`)})
		if res.Status != 500 || res.Excerpt != big[:50] {
			t.Fatalf("status %d excerpt %q", res.Status, res.Excerpt)
		}
	}
}

func TestAddressGuardRefusesAtDialTime(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, nil)
	_, port, _ := net.SplitHostPort(srv.ln.Addr().String())
	var srv6 *server
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil { // IPv6 loopback, when the machine has it
		ln.Close()
		srv6 = startServer(t, "tcp", "[::1]:0", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }, nil)
	}
	port6 := port
	if srv6 != nil {
		_, port6, _ = net.SplitHostPort(srv6.ln.Addr().String())
	}
	strict := newClient(t, func(c *dispatcher.ClientConfig) { c.AllowNetworks = nil })
	allowing := newClient(t, nil) // 127.0.0.0/8 and ::1 allow-listed
	f := func(c *dispatcher.Client, url, wantCode string) {
		t.Helper()
		res := c.Deliver(context.Background(), dispatcher.Request{URL: url, Body: []byte(`{}`)})
		if res.ErrCode != wantCode {
			t.Errorf("%s: code %q (%v), want %q", url, res.ErrCode, res.Err, wantCode)
		}
		if wantCode == schemas.ErrCodeAddressRefused && (!errors.Is(res.Err, dispatcher.ErrAddressRefused) || !strings.Contains(res.Err.Error(), "refused")) {
			t.Errorf("%s: error %v does not wrap ErrAddressRefused", url, res.Err)
		}
	}
	// Refused before any connection is attempted (these addresses are never contacted).
	f(strict, "http://127.0.0.1:"+port+"/", schemas.ErrCodeAddressRefused)
	f(strict, "http://localhost:"+port+"/", schemas.ErrCodeAddressRefused)
	f(strict, "http://10.0.0.1:9/", schemas.ErrCodeAddressRefused)
	f(strict, "http://169.254.169.254/latest/meta-data/", schemas.ErrCodeAddressRefused)
	f(strict, "http://[::1]:"+port6+"/", schemas.ErrCodeAddressRefused)
	f(strict, "http://[::ffff:127.0.0.1]:"+port+"/", schemas.ErrCodeAddressRefused)
	f(strict, "http://[::ffff:10.0.0.1]:9/", schemas.ErrCodeAddressRefused)
	f(strict, "http://[fd00:ec2::254]/", schemas.ErrCodeAddressRefused)
	f(allowing, "http://10.0.0.1:9/", schemas.ErrCodeAddressRefused)
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("the receiver got %d requests through the guard", n)
	}
	// Allow-listed loopback connects (loopback only: nothing else is ever contacted).
	f(allowing, "http://127.0.0.1:"+port+"/", "")
	f(allowing, "http://[::ffff:127.0.0.1]:"+port+"/", "")
	if srv6 != nil {
		f(allowing, "http://[::1]:"+port6+"/", "")
	}
	dev := newClient(t, func(c *dispatcher.ClientConfig) { c.AllowNetworks = nil; c.Dev = true })
	f(dev, "http://127.0.0.1:"+port+"/", "")
	f(dev, "http://10.0.0.1:9/", schemas.ErrCodeAddressRefused)
	if n := srv.requests.Load(); n != 3 {
		t.Fatalf("the receiver got %d requests, want 3", n)
	}
}
