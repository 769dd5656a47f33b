package dispatcher_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/schemas"
)

// Where loopback is allowed, deliveries still never connect to the
// process's own listening addresses (its API and ops ports): an endpoint
// URL must not read the process's metrics, profiles or API. Other
// receivers on loopback stay reachable.
func TestDeliveriesNeverReachTheProcessItself(t *testing.T) {
	ok := func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200); ctx.SetBodyString("secret ops content") }
	own := startServer(t, "tcp", "127.0.0.1:0", ok, nil)
	anyAddr := startServer(t, "tcp", "127.0.0.1:0", ok, nil)
	other := startServer(t, "tcp", "127.0.0.1:0", ok, nil)
	_, anyPort, _ := net.SplitHostPort(anyAddr.ln.Addr().String())
	shared := dispatcher.NewListeners(own.ln.Addr().String(), ":"+anyPort)
	allowing := newClient(t, func(c *dispatcher.ClientConfig) { c.Listeners = shared })
	dev := newClient(t, func(c *dispatcher.ClientConfig) { c.AllowNetworks = nil; c.Dev = true; c.Listeners = shared })
	own2 := startServer(t, "tcp", "127.0.0.1:0", ok, nil)
	allowing.AddListener(own2.ln.Addr().String()) // shared: dev refuses it too

	f := func(c *dispatcher.Client, url, wantCode string) {
		t.Helper()
		res := c.Deliver(context.Background(), dispatcher.Request{URL: url, Body: []byte(`{}`)})
		if res.ErrCode != wantCode {
			t.Fatalf("%s: code %q (%v), want %q", url, res.ErrCode, res.Err, wantCode)
		}
		if wantCode != "" && (!errors.Is(res.Err, dispatcher.ErrAddressRefused) || !strings.Contains(res.Err.Error(), "own listening address")) || strings.Contains(res.Excerpt, "secret") && wantCode != "" {
			t.Fatalf("%s: %v %q", url, res.Err, res.Excerpt)
		}
	}
	for _, c := range []*dispatcher.Client{allowing, dev} {
		f(c, own.url("http")+"/metrics", schemas.ErrCodeAddressRefused)
		f(c, anyAddr.url("http"), schemas.ErrCodeAddressRefused)
		f(c, "http://localhost:"+anyPort+"/", schemas.ErrCodeAddressRefused)
		f(c, own2.url("http"), schemas.ErrCodeAddressRefused)
		f(c, other.url("http"), "")
	}
	for _, s := range []*server{own, anyAddr, own2} {
		if n := s.requests.Load(); n != 0 {
			t.Fatalf("%s got %d requests", s.ln.Addr(), n)
		}
	}
}
