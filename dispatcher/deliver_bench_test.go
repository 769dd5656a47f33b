package dispatcher_test

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/endpoint"
)

// BenchmarkClientDeliver: one signed delivery to a local receiver over a
// kept-alive connection, without endpoint options (the path every endpoint
// takes) and with two static headers.
func BenchmarkClientDeliver(b *testing.B) {
	srv := startBenchServer(b)
	c := newBenchClient(b)
	body := []byte(`{"id":"evt_1","type":"document.signed","created":1700000000,"data":{"document_id":"doc_abc123","signer":{"email":"john@example.com"}}}`)
	secrets := [][]byte{[]byte(endpoint.NewSecret())}
	run := func(b *testing.B, headers []endpoint.Header) {
		req := benchRequest(srv, body, secrets, headers)
		b.ReportAllocs()
		for range b.N {
			if res := c.Deliver(context.Background(), req); !res.OK() {
				b.Fatal(res.Err)
			}
		}
	}
	b.Run("plain", func(b *testing.B) { run(b, nil) })
	b.Run("headers=2", func(b *testing.B) {
		run(b, []endpoint.Header{{Name: "Authorization", Value: "Bearer tok_0123456789abcdef"}, {Name: "X-Tenant", Value: "acme"}})
	})
}

func startBenchServer(b *testing.B) string {
	ln, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) }}
	go srv.Serve(ln)                     //nolint:errcheck
	b.Cleanup(func() { srv.Shutdown() }) //nolint:errcheck
	return "http://" + ln.Addr().String() + "/hook"
}
