package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// The tests of issue 14 (hardening), one or more per defect, each against
// a real gateway on the real Kafka.

// startLoggedAPI is startAPI with the log (debug and up) kept for inspection.
func startLoggedAPI(t *testing.T, cfg Config) (*Gateway, *testenv.LogBuffer) {
	t.Helper()
	sink := &testenv.LogBuffer{}
	g, err := New(cfg, slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAPI(t, g) })
	return g, sink
}

// exchange writes raw to a new connection to addr (closing the writing
// side when closeWrite) and reads one response within wait. A response
// that does not arrive in time is an error: the server is still reading.
func exchange(t *testing.T, addr, raw string, closeWrite bool, wait time.Duration) (*http.Response, []byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, nil, fmt.Errorf("write: %w", err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("no answer within %s: %w", wait, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil && len(b) == 0 {
		return resp, nil, fmt.Errorf("body: %w", err)
	}
	return resp, b, nil
}

// wantEnvelope fails unless the answer is status with the error code, in
// the JSON envelope, as the OpenAPI document says for method path.
func wantEnvelope(t *testing.T, method, path string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var v struct {
		Success *bool
		Error   struct{ Code string }
	}
	if resp.StatusCode != status || json.Unmarshal(body, &v) != nil || v.Success == nil || *v.Success || v.Error.Code != code {
		t.Fatalf("%s %s: %d %s; want %d with code %s in the envelope", method, path, resp.StatusCode, body, status, code)
	}
	if err := openAPISpec(t).validate(method, path, resp.StatusCode, resp.Header.Get("Content-Type"), body); err != nil {
		t.Fatal(err)
	}
}

// Item 1: authentication and the route's body limit are decided from the
// headers. An unauthenticated upload is answered 401 while its body is
// still arriving, an authenticated one declaring more than its route
// allows 413, both at once; a client that asks first (Expect:
// 100-continue) gets the refusal instead of "100 Continue".
func TestRefusalsAreDecidedFromTheHeaders(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	kib := strings.Repeat("x", 1<<10)
	f := func(method, path, headers string, status int, code string) {
		t.Helper()
		raw := method + " " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers + "\r\n" + kib
		resp, body, err := exchange(t, g.Addr(), raw, false, 5*time.Second)
		if err != nil {
			t.Fatalf("%s %s with %q: %v", method, path, headers, err)
		}
		wantEnvelope(t, method, path, resp, body, status, code)
	}
	eightMB := fmt.Sprintf("Content-Length: %d\r\n", 8<<20)
	f("POST", "/v1/events/batch", eightMB, 401, "unauthorized")
	f("POST", "/v1/events", eightMB, 401, "unauthorized")
	f("POST", "/v1/webhooks/endpoints", eightMB, 401, "unauthorized")
	f("POST", "/v1/events/batch", eightMB+"Authorization: Bearer zk_wrong\r\n", 401, "unauthorized")
	f("POST", "/v1/events/batch", "Transfer-Encoding: chunked\r\n", 401, "unauthorized")
	f("POST", "/v1/webhooks/endpoints", "Content-Length: 1048576\r\nAuthorization: Bearer "+keyA+"\r\n", 413, "payload_too_large")
	f("PUT", "/v1/webhooks/endpoints/we_x", "Content-Length: 1048576\r\nAuthorization: Bearer "+keyA+"\r\n", 413, "payload_too_large")
	f("POST", "/v1/events", fmt.Sprintf("Content-Length: %d\r\nAuthorization: Bearer %s\r\n", MaxEventBytes+1, svcKey), 413, "payload_too_large")
	f("POST", "/v1/events/batch", fmt.Sprintf("Content-Length: %d\r\nAuthorization: Bearer %s\r\n", MaxBatchBytes+1, svcKey), 413, "payload_too_large")

	// Expect: 100-continue: the final answer comes before any body byte.
	for _, h := range []string{eightMB, eightMB + "Authorization: Bearer " + keyA + "\r\n"} {
		raw := "POST /v1/webhooks/endpoints HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n" + h + "\r\n"
		resp, body, err := exchange(t, g.Addr(), raw, false, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 100 {
			t.Fatalf("%q: the server invited the body of a request it will refuse", h)
		}
		want, code := 401, "unauthorized"
		if strings.Contains(h, "Authorization") {
			want, code = 413, "payload_too_large"
		}
		wantEnvelope(t, "POST", "/v1/webhooks/endpoints", resp, body, want, code)
	}
}

// Item 1: connections per client address are capped (default 256); the
// one over the cap is answered 429 in the envelope and closed.
func TestConnectionsPerAddressAreCapped(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for range 256 {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	// Let the server accept them all before the next one.
	c := open[255]
	fmt.Fprintf(c, "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the 256th connection: %v %v", resp, err)
	}
	resp, body, err := exchange(t, g.Addr(), "GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyA+"\r\n\r\n", false, 5*time.Second)
	if err != nil {
		t.Fatalf("the 257th connection: %v", err)
	}
	wantEnvelope(t, "GET", "/v1/webhooks/events", resp, body, 429, "too_many_connections")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %v", resp.Header)
	}
}

// Item 2: requests fasthttp cannot parse are answered 400 in the envelope
// and no secret they carry (API key, service token, a custom header's
// value) reaches the log, an answer or a metric.
func TestNoSecretReachesTheLog(t *testing.T) {
	g, logs := startLoggedAPI(t, testConfig(testenv.Kafka(t)))
	secrets := []string{keyA, svcKey, "zk_notakeybutsecret0123456789abcdef", "custom-header-secret-value"}
	auth := "Authorization: Bearer " + keyA + "\r\nX-Api-Token: " + secrets[3] + "\r\n"
	f := func(raw string, status int, code string) {
		t.Helper()
		resp, body, err := exchange(t, g.Addr(), raw, true, 5*time.Second)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		t.Logf("%.60q → %d", raw, resp.StatusCode)
		wantEnvelope(t, "GET", "/v1/webhooks/events", resp, body, status, code)
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				t.Fatalf("%q: the answer shows a secret: %s", raw, body)
			}
		}
	}
	f("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"X-A: a\x00b\r\n\r\n", 400, "bad_request")
	f("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyA+"\x00\r\n\r\n", 400, "bad_request")
	f("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+secrets[2]+"\x01\r\n\r\n", 400, "bad_request")
	f("POST /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: -1\r\n\r\n", 400, "bad_request")
	f("POST /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_request")
	f("POST /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "bad_request")
	f("GET * HTTP/1.1\r\nHost: x\r\n"+auth+"\r\n", 400, "bad_request")
	f("GET /v1/webhooks/events?key="+keyA+" HTTP/1.1 x\r\nHost: x\r\n"+auth+"\r\n", 400, "bad_request")
	f("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"Bad Header: "+keyA+"\r\n\r\n", 400, "bad_request")
	f("POST /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request")
	f("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+auth+"X-Big: "+strings.Repeat(keyA, 400)+"\r\n\r\n", 431, "header_too_large")

	_, metrics := get(t, "http://"+g.OpsAddr()+"/metrics")
	_, cmdline := get(t, "http://"+g.OpsAddr()+"/debug/pprof/cmdline")
	for _, s := range secrets {
		for what, text := range map[string]string{"log": logs.String(), "metrics": metrics, "cmdline": cmdline} {
			if strings.Contains(text, s) || strings.Contains(text, strings.TrimPrefix(s, "zk_")) {
				t.Errorf("the %s shows the secret %s:\n%s", what, s, text)
			}
		}
	}
}

// Item 5: endpoint URLs that can never be delivered are refused at
// creation: outside -dev every literal address the delivery guard refuses
// (in every spelling a resolver or a URL parser might accept), special-use
// names; in every mode host names that are not ASCII letters, digits,
// hyphens and dots.
func TestUndeliverableEndpointURLsAreRefused(t *testing.T) {
	kc := testenv.Kafka(t)
	prod := startAPI(t, testConfig(kc))
	dev := startAPI(t, testConfig(kc, func(c *Config) { c.Dev = true }))
	f := func(g *Gateway, u string, status int, issue string) {
		t.Helper()
		r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints", fmt.Sprintf(`{"url": %q, "events": ["*"]}`, u))
		if r.status != status {
			t.Fatalf("%s: %d %s; want %d", u, r.status, r.body, status)
		}
		if status == 400 && (r.code() != "validation_error" || fmt.Sprint(r.fields()) != "[url]" || !strings.Contains(string(r.body), issue)) {
			t.Fatalf("%s: %s; want a url issue saying %q", u, r.body, issue)
		}
	}
	for _, u := range []string{
		"https://127.0.0.1./", "https://0x7f000001/", "https://2130706433/", "https://017700000001/", "https://127.1/",
		"https://0177.0.0.1/", "https://127.0.0.1.:443/", "https://[::127.0.0.1]/", "https://[64:ff9b::7f00:1]/",
		"https://[2002:7f00:1::1]/", "https://[::ffff:7f00:1]/", "https://100.64.0.1/", "https://255.255.255.255/",
		"https://192.0.2.10/", "https://198.51.100.7/", "https://203.0.113.9/", "https://198.18.0.1/", "https://240.0.0.1/",
		"https://192.0.0.1/", "https://[2001:db8::1]/", "https://[100::1]/", "https://[fec0::1]/", "https://[3fff::1]/",
		"https://localhost.localdomain/", "https://printer.local/", "https://db.internal/", "https://x.invalid/",
	} {
		f(prod, u, 400, "")
	}
	for _, g := range []*Gateway{prod, dev} {
		for _, u := range []string{"https://bücher.example/", "https://１２７.０.０.１/", "https://127。0。0。1/", "https://ｅｘａｍｐｌｅ.com/", "https://exa_mple.com/"} {
			f(g, u, 400, "ASCII")
		}
		f(g, "https://xn--bcher-kva.com/hook", 201, "") // punycode is how an IDN host is given
		f(g, "https://8.8.8.8/hook", 201, "")
	}
	// In -dev loopback is allowed, but not IPv6 forms that only carry 127.0.0.1.
	f(dev, "http://127.0.0.1:9/hook", 201, "")
	f(dev, "http://[::1]:9/hook", 201, "")
	f(dev, "http://localhost:9/hook", 201, "")
	for _, u := range []string{"http://[64:ff9b::7f00:1]:9/", "http://[::127.0.0.1]:9/", "http://[2002:7f00:1::1]:9/"} {
		f(dev, u, 400, "")
	}
}

// Item 6: strict input. Invalid UTF-8, duplicate keys and JSON nested past
// the limit are refused with a 400 that names the field; so are framing
// tricks; compressed bodies are 415; If-Match follows RFC 9110; HEAD works
// on every GET route; over-long request lines and headers are 414 and 431.
func TestStrictInput(t *testing.T) {
	kc := testenv.Kafka(t)
	g := startAPI(t, testConfig(kc))
	ep := "/v1/webhooks/endpoints"
	mgmt := func(method, path, body string, status int, code, field string) {
		t.Helper()
		r := call(t, g, keyA, method, path, body)
		want(t, r, status, code)
		if field != "" && !strings.Contains(fmt.Sprint(r.fields()), field) {
			t.Fatalf("%s: details %v do not name %s", body, r.fields(), field)
		}
	}
	deep := strings.Repeat("[", 200) + strings.Repeat("]", 200)
	mgmt("POST", ep, `{"url": "https://a.example.com/", "url": "https://b.example.com/", "events": ["*"]}`, 400, "validation_error", "url")
	mgmt("POST", ep, `{"url": "https://a.example.com/", "events": ["*"], "description": "caf`+"\xe9"+`"}`, 400, "validation_error", "description")
	mgmt("POST", ep, `{"url": "https://a.example.com/", "events": ["*", "document.`+"\xff"+`"]}`, 400, "validation_error", "events")
	mgmt("POST", ep, `{"url": "https://a.example.com/", "events": ["*"], "description": "\ud800"}`, 400, "validation_error", "description")
	mgmt("POST", ep, `{"url": "https://a.example.com/", "events": ["*"], "description": `+deep+`}`, 400, "validation_error", "description")
	r := call(t, g, keyA, "POST", ep, `{"url": "https://a.example.com/", "events": ["*"], "description": `+deep+`}`)
	if !strings.Contains(r.code()+string(r.body), "nested") {
		t.Fatalf("too deep: %s does not say so", r.body)
	}

	events := func(path, body string, status int, code, field string) {
		t.Helper()
		r := call(t, g, svcKey, "POST", path, body)
		want(t, r, status, code)
		if field != "" && !strings.Contains(string(r.body), `"field":"`+field) {
			t.Fatalf("%s: %s does not name %s", body, r.body, field)
		}
	}
	deepData := strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100)
	events("/v1/events", `{"type":"document.signed","account_id":"a","data":{"name":"`+"\xff\xfe"+`"}}`, 400, "validation_error", "data")
	events("/v1/events", `{"type":"document.signed","account_id":"a","data":{"k`+"\xc3"+`":1}}`, 400, "validation_error", "data")
	events("/v1/events", `{"type":"document.signed","account_id":"a","data":{"a":1,"a":2}}`, 400, "validation_error", "data")
	events("/v1/events", `{"type":"document.signed","type":"ocr.completed","account_id":"a","data":{}}`, 400, "validation_error", "type")
	events("/v1/events", `{"type":"document.signed","account_id":"a","data":`+deepData+`}`, 400, "validation_error", "data")
	events("/v1/events/batch", `{"events":[{"type":"document.signed","account_id":"a","data":{"a":1,"\u0061":2}}]}`, 400, "validation_error", "events[0].data")
	events("/v1/events/batch", `{"events":[],"events":[{"type":"document.signed","account_id":"a","data":{}}]}`, 400, "validation_error", "events")

	// Framing and encodings, over a raw connection.
	raw := func(req string, status int, code string) {
		t.Helper()
		resp, body, err := exchange(t, g.Addr(), req, true, 5*time.Second)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		wantEnvelope(t, "POST", "/v1/events", resp, body, status, code)
	}
	ev := `{"type":"document.signed","account_id":"a","data":{}}`
	post := "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer " + svcKey + "\r\n"
	raw(post+fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(ev), len(ev), ev), 400, "bad_request")
	raw(post+fmt.Sprintf("Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(ev), len(ev), ev), 400, "bad_request")
	raw(post+fmt.Sprintf("Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(ev), ev), 415, "unsupported_media_type")
	raw(post+fmt.Sprintf("Content-Encoding: br\r\nContent-Length: %d\r\n\r\n%s", len(ev), ev), 415, "unsupported_media_type")
	if resp, body, err := exchange(t, g.Addr(), post+fmt.Sprintf("Content-Encoding: identity\r\nContent-Length: %d\r\n\r\n%s", len(ev), ev), true, 5*time.Second); err != nil || resp.StatusCode != 202 {
		t.Fatalf("Content-Encoding: identity: %v %v %s", resp, err, body)
	}

	// If-Match: "*" matches any version, a weak tag never matches, a list
	// matches when one of its strong tags does.
	id := create(t, g, keyA, createBody)["id"].(string)
	one := ep + "/" + id
	want(t, call(t, g, keyA, "PUT", one, `{"description": "a"}`, "If-Match", "*"), 200, "")
	want(t, call(t, g, keyA, "PUT", one, `{"description": "b"}`, "If-Match", `W/"2"`), 409, "conflict")
	want(t, call(t, g, keyA, "PUT", one, `{"description": "c"}`, "If-Match", `"7", "2"`), 200, "")
	want(t, call(t, g, keyA, "PUT", one, `{"description": "d"}`, "If-Match", `"1", W/"3"`), 409, "conflict")
	want(t, call(t, g, keyA, "PUT", one, `{"description": "e"}`, "If-Match", `"3`), 400, "validation_error")
	want(t, call(t, g, keyA, "DELETE", one, "", "If-Match", `W/"3"`), 409, "conflict")
	want(t, call(t, g, keyA, "DELETE", one, "", "If-Match", "*"), 200, "")
	want(t, call(t, g, keyA, "DELETE", one, "", "If-Match", "*"), 404, "endpoint_not_found")

	// HEAD answers like GET, without the body.
	for _, path := range []string{"/v1/webhooks/events", "/v1/webhooks/endpoints", "/v1/openapi.json"} {
		req, _ := http.NewRequest("GET", "http://"+g.Addr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+keyA)
		getResp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		getBody, _ := io.ReadAll(getResp.Body)
		getResp.Body.Close()
		req.Method = "HEAD"
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != getResp.StatusCode || len(b) != 0 || resp.ContentLength != int64(len(getBody)) || resp.Header.Get("Content-Type") != getResp.Header.Get("Content-Type") {
			t.Fatalf("HEAD %s: %d, %d bytes, Content-Length %d; GET: %d, %d bytes", path, resp.StatusCode, len(b), resp.ContentLength, getResp.StatusCode, len(getBody))
		}
	}

	// Over-long request target: 414; over-long headers: 431.
	long := func(req string, status int, code string) {
		t.Helper()
		resp, body, err := exchange(t, g.Addr(), req, true, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wantEnvelope(t, "GET", "/v1/webhooks/events", resp, body, status, code)
	}
	long("GET /v1/webhooks/events?x="+strings.Repeat("a", 3000)+" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long")
	long("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 9000)+"\r\n\r\n", 431, "header_too_large")
	long("GET /v1/webhooks/events HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 300)+"\r\n", 431, "header_too_large")
}

// Item 7: where loopback is allowed (-delivery.allow-networks covers
// 127.0.0.0/8), a test send to the process's own listening addresses (its
// API and ops ports) is refused instead of returning their content.
func TestTestSendNeverReachesTheProcessItself(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t), receiverConfig))
	for _, u := range []string{
		"http://" + g.OpsAddr() + "/metrics",
		"http://" + g.OpsAddr() + "/debug/pprof/cmdline",
		"http://" + g.Addr() + "/v1/openapi.json",
	} {
		id := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, u))["id"].(string)
		r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
		want(t, r, 200, "")
		if d := r.data(); d["test_sent"] != false || d["error_code"] != "address_refused" || d["response_body"] != "" {
			t.Fatalf("test send to %s: %s", u, r.body)
		}
	}
	// A receiver beside it on loopback still works.
	rc := newReceiver(t, 200)
	id := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, rc.url))["id"].(string)
	if r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", ""); r.data()["response_status"] != 200.0 {
		t.Fatalf("test send to a receiver: %s", r.body)
	}
}

// Item 8: failed authentication is limited per client address: after the
// burst, 429 with Retry-After, even for a key that would be valid; other
// addresses and the rest of the API are unaffected.
func TestFailedAuthenticationIsRateLimited(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	var got401, got429 int
	var retryAfter string
	for i := range 100 {
		r := call(t, g, fmt.Sprintf("zk_wrong%03d", i), "GET", "/v1/webhooks/events", "")
		switch r.status {
		case 401:
			got401++
		case 429:
			got429++
			retryAfter = r.header.Get("Retry-After")
			if r.code() != "too_many_failed_authentications" {
				t.Fatalf("429 with code %s", r.code())
			}
		default:
			t.Fatalf("wrong key: %d %s", r.status, r.body)
		}
	}
	if got401 > 20 || got429 < 80 || retryAfter == "" {
		t.Fatalf("100 wrong keys: %d × 401, %d × 429 (Retry-After %q)", got401, got429, retryAfter)
	}
	// The limited address is refused before its key is looked at, so that
	// guessing learns nothing; ingestion is limited the same way.
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/events", ""), 429, "too_many_failed_authentications")
	want(t, call(t, g, "zk_wrong", "POST", "/v1/events", `{"type":"document.signed","account_id":"a","data":{}}`), 429, "too_many_failed_authentications")
	// The public document stays public.
	want(t, call(t, g, "", "GET", "/v1/openapi.json", ""), 200, "")
}

// Item 6: the OpenAPI document types url (format uri, https, an ASCII host)
// and subscriptions (the catalogue, its prefixes' wildcards, "*"), so that
// what it calls valid the server accepts, and what the server refuses for
// its shape the document refuses too.
func TestOpenAPITypesURLsAndSubscriptions(t *testing.T) {
	s := openAPISpec(t)
	compile := func(ptr string) *jsonschema.Schema {
		t.Helper()
		sch, err := s.compiler.Compile(specURL + "#" + ptr)
		if err != nil {
			t.Fatal(err)
		}
		return sch
	}
	sub := compile("/components/schemas/Subscription")
	url := compile("/components/schemas/EndpointCreate/properties/url")
	eventType := compile("/components/schemas/TestRequest/properties/event_type")
	valid := func(sch *jsonschema.Schema, v string) bool { return sch.Validate(v) == nil }

	// Subscriptions: exactly what schemas.IsSubscription accepts, among
	// every name, every dotted prefix's wildcard and some near misses.
	candidates := []string{"*", "**", "document*", "nope.*", ".*", "document.", "test", "Document.signed"}
	for _, e := range schemas.Catalogue {
		candidates = append(candidates, e.Name, e.Name+".*", strings.ToUpper(e.Name))
		parts := strings.Split(e.Name, ".")
		for i := 1; i < len(parts); i++ {
			candidates = append(candidates, strings.Join(parts[:i], ".")+".*")
		}
	}
	for _, c := range candidates {
		if valid(sub, c) != schemas.IsSubscription(c) {
			t.Errorf("subscription %q: the document says %v, the server %v", c, valid(sub, c), schemas.IsSubscription(c))
		}
	}
	for _, c := range append([]string{"test", "nope"}, candidates...) {
		if want := c == schemas.TestEventType || schemas.IsEventType(c); valid(eventType, c) != want {
			t.Errorf("event_type %q: the document says %v, the server %v", c, valid(eventType, c), want)
		}
	}
	// URLs: the document's shape rules agree with the server's.
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	for _, u := range []string{
		"https://your-app.com/webhooks/zaits", "https://8.8.8.8:8443/hook?x=1", "https://[2606:4700:4700::1111]/h",
		"https://xn--bcher-kva.com/", "https://a.example.com", "https://a.example.com?x=1", "https://a-b.c-d.com./x",
	} {
		if !valid(url, u) {
			t.Errorf("the document refuses %s", u)
		}
		want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints", fmt.Sprintf(`{"url": %q, "events": ["document.*", "face.verified"]}`, u)), 201, "")
	}
	for _, u := range []string{
		"http://your-app.com/", "ftp://your-app.com/", "https://bücher.com/", "https://a b.com/", "https://x.com/#f",
		"https://user@x.com/", "your-app.com/webhooks", "https://-x.com/", "https://x_y.com/", "https://１２７.０.０.１/",
	} {
		if valid(url, u) {
			t.Errorf("the document accepts %s", u)
		}
		want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints", fmt.Sprintf(`{"url": %q, "events": ["*"]}`, u)), 400, "validation_error")
	}
}

// Every operation documents the answers the server gives before any
// handler runs (framing 400, 414, 429 per client address, 431, 503 over
// the connection cap) and, with a body, 413 and 415: a new route must
// list them too.
func TestOpenAPIDocumentsTheServersOwnAnswers(t *testing.T) {
	for tpl, item := range openAPISpec(t).doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			o, ok := op.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			need := []string{"400", "414", "429", "431", "503"}
			if method == "post" || method == "put" || method == "patch" {
				need = append(need, "413", "415")
			}
			for _, st := range need {
				if _, ok := o["responses"].(map[string]any)[st]; !ok {
					t.Errorf("%s %s does not document %s", method, tpl, st)
				}
			}
		}
	}
}
