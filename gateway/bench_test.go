package gateway

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/testenv"
)

// benchRequest makes one request to g with fasthttp and fails unless the status is want.
func benchRequest(b *testing.B, c *fasthttp.Client, method, url, key, body string, want int) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := c.DoTimeout(req, resp, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode() != want {
		b.Fatalf("%s %s = %d %s", method, url, resp.StatusCode(), resp.Body())
	}
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkCreate measures POST /v1/webhooks/endpoints end to end over
// HTTP against the real Kafka: validation, AES-GCM, acks=all write and the
// wait until the gateway's own view applied it. 8 concurrent clients.
// allocs/op count the whole process (client, server, Kafka writer/reader).
func BenchmarkCreate(b *testing.B) {
	g := startAPI(b, testConfig(testenv.Kafka(b)))
	c := &fasthttp.Client{}
	url := "http://" + g.Addr() + "/v1/webhooks/endpoints"
	var n atomic.Int64
	b.SetParallelism(4) // 2 cores × 4 = 8 clients
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"url": "https://example.com/h/%d", "events": ["document.*", "face.verified"], "description": "bench"}`, n.Add(1))
			benchRequest(b, c, "POST", url, keyA, body, 201)
		}
	})
	reportRate(b, start)
}

// BenchmarkList measures GET /v1/webhooks/endpoints (25 of 200 endpoints,
// active filter) over HTTP, 8 concurrent clients.
func BenchmarkList(b *testing.B) {
	g := startAPI(b, testConfig(testenv.Kafka(b)))
	for i := range 200 {
		create(b, g, keyA, fmt.Sprintf(`{"url": "https://example.com/h/%d", "events": ["*"], "active": %v}`, i, i%4 != 0))
	}
	c := &fasthttp.Client{}
	url := "http://" + g.Addr() + "/v1/webhooks/endpoints?active=true&page=2&per_page=25"
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchRequest(b, c, "GET", url, keyA, "", 200)
		}
	})
	reportRate(b, start)
}

// BenchmarkDecodeEndpoint measures decoding and validating a create body alone.
func BenchmarkDecodeEndpoint(b *testing.B) {
	body := []byte(createBody)
	b.ReportAllocs()
	for b.Loop() {
		if _, rerr := decodeEndpoint(body, true, urlPolicy{}); rerr != nil {
			b.Fatal(rerr)
		}
	}
}

// BenchmarkListHandler measures the list handler alone (auth, rate limit,
// filter, page, encode) on a RequestCtx, without the network: its allocs/op
// are the handler's own.
func BenchmarkListHandler(b *testing.B) {
	g := startAPI(b, testConfig(testenv.Kafka(b)))
	for i := range 200 {
		create(b, g, keyA, fmt.Sprintf(`{"url": "https://example.com/h/%d", "events": ["*"], "active": %v}`, i, i%4 != 0))
	}
	h := g.account("listEndpoints", g.listEndpoints)
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/v1/webhooks/endpoints?active=true&page=2&per_page=25")
	ctx.Request.Header.Set("Authorization", "Bearer "+keyA)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatal(string(ctx.Response.Body()))
		}
	}
	reportRate(b, start)
}

// BenchmarkKeyLookup: authenticating a request against 10 and 10,000
// configured API keys (the key presented is the last one configured).
func BenchmarkKeyLookup(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var entries []string
			var key string
			for i := range n {
				k, entry, err := MintKey(fmt.Sprintf("acct_%d", i), false)
				if err != nil {
					b.Fatal(err)
				}
				entries, key = append(entries, entry), k
			}
			creds, err := parseCredentials("bench", strings.Join(entries, ","))
			if err != nil {
				b.Fatal(err)
			}
			k := newKeyring(creds, nil)
			token := []byte(key)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := k.lookup(token); !ok {
					b.Fatal("key not found")
				}
			}
		})
	}
}
