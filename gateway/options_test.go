package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

const token = "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"

// The options through the API: create, get, list and update answer them
// (header values masked everywhere), a test send carries the headers in
// full, the record on <p>.endpoints holds no header value in clear, and a
// second gateway reading the topic answers and sends the same.
func TestEndpointOptionsRoundTrip(t *testing.T) {
	kc := testenv.Kafka(t)
	g := startAPI(t, testConfig(kc, receiverConfig))
	rc := newReceiver(t, 200)
	c := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["document.*"],
		"headers": {"Authorization": %q, "X-Tenant": "acme"},
		"filter": {"data.amount": {"$gte": 100},  "data.currency": {"$in": ["EUR", "USD"]}},
		"rate_limit": 5}`, rc.url, token))
	id := c["id"].(string)
	wantView := func(where string, d map[string]any, headers, filter string, rate any) {
		t.Helper()
		h, _ := json.Marshal(d["headers"])
		f, _ := json.Marshal(d["filter"])
		if string(h) != headers || string(f) != filter || d["rate_limit"] != rate {
			t.Fatalf("%s: headers %s filter %s rate_limit %v; want %s %s %v", where, h, f, d["rate_limit"], headers, filter, rate)
		}
	}
	masked := `{"Authorization":"Be…","X-Tenant":"••••"}`
	filter := `{"data.amount":{"$gte":100},"data.currency":{"$in":["EUR","USD"]}}`
	wantView("create", c, masked, filter, 5.0)
	wantView("get", call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, "").data(), masked, filter, 5.0)
	list := call(t, g, keyA, "GET", "/v1/webhooks/endpoints", "")
	wantView("list", list.list()[0].(map[string]any), masked, filter, 5.0)
	if bytes.Contains(list.body, []byte("sk_live")) {
		t.Fatal("the list shows a header value")
	}

	// A test send carries the headers in full, beside the signed ones.
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", ""), 200, "")
	req, body := rc.last()
	if req.Header.Get("Authorization") != token || req.Header.Get("X-Tenant") != "acme" || req.Header.Get("X-Zaits-Signature") != seedSig(c["secret"].(string), body) {
		t.Fatalf("test send headers %v", req.Header)
	}

	// At rest: no header value in clear on <p>.endpoints.
	r := kafkaReader(kc, kc.Topic(schemas.TopicEndpoints))
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stored schemas.Endpoint
	if err := json.Unmarshal(m.Value, &stored); err != nil || len(stored.Headers) != 2 || stored.RateLimit != 5 || string(stored.Filter) != filter {
		t.Fatalf("stored record %s: %v", m.Value, err)
	}
	if bytes.Contains(m.Value, []byte("sk_live")) || bytes.Contains(m.Value, []byte("acme")) {
		t.Fatalf("a header value is stored in clear: %s", m.Value)
	}

	// A second gateway (a restart) decrypts the same headers.
	g2 := startAPI(t, testConfig(kc, receiverConfig))
	wantView("get from a second gateway", call(t, g2, keyA, "GET", "/v1/webhooks/endpoints/"+id, "").data(), masked, filter, 5.0)
	want(t, call(t, g2, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", ""), 200, "")
	if req, _ := rc.last(); req.Header.Get("Authorization") != token {
		t.Fatalf("second gateway's test send: %v", req.Header)
	}

	// Updates: a given option replaces, an absent one stays, null removes.
	put := func(body string) map[string]any {
		t.Helper()
		r := call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, body)
		want(t, r, 200, "")
		return r.data()
	}
	wantView("replace headers", put(`{"headers": {"x-api-key": "k_0123456789ab"}}`), `{"x-api-key":"k_…"}`, filter, 5.0)
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", ""), 200, "")
	if req, _ := rc.last(); req.Header.Get("Authorization") != "" || req.Header.Get("X-Api-Key") != "k_0123456789ab" {
		t.Fatalf("after replacing the headers: %v", req.Header)
	}
	wantView("description only", put(`{"description": "x"}`), `{"x-api-key":"k_…"}`, filter, 5.0)
	wantView("new filter and limit", put(`{"filter": {"type": "document.signed"}, "rate_limit": 10000}`), `{"x-api-key":"k_…"}`, `{"type":"document.signed"}`, 10000.0)
	wantView("remove filter and limit", put(`{"filter": null, "rate_limit": null}`), `{"x-api-key":"k_…"}`, `null`, nil)
	wantView("a filter again", put(`{"filter": {"type": "x.y"}}`), `{"x-api-key":"k_…"}`, `{"type":"x.y"}`, nil)
	wantView("{} removes", put(`{"filter": {}, "headers": {}}`), `{}`, `null`, nil)
	wantView("null headers", put(`{"headers": {"A": "b"}}`), `{"A":"••••"}`, `null`, nil)
	wantView("null headers", put(`{"headers": null}`), `{}`, `null`, nil)
	// Without options, an endpoint answers them empty.
	plain := create(t, g, keyA, `{"url": "https://example.com/h", "events": ["*"], "headers": null, "filter": null, "rate_limit": null}`)
	wantView("plain", plain, `{}`, `null`, nil)
}

// Every invalid option is a 400 validation_error naming the field, against
// a running gateway; the largest valid options are accepted.
func TestEndpointOptionsValidation(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	ep := "/v1/webhooks/endpoints"
	id := create(t, g, keyA, createBody)["id"].(string)
	f := func(options string, status int, field string) {
		t.Helper()
		for _, req := range []struct{ method, path, body string }{
			{"POST", ep, `{"url": "https://a.example.com", "events": ["*"], ` + options + `}`},
			{"PUT", ep + "/" + id, `{` + options + `}`},
		} {
			r := call(t, g, keyA, req.method, req.path, req.body)
			if status == 400 {
				want(t, r, 400, "validation_error")
				if !strings.Contains(fmt.Sprint(r.fields()), field) {
					t.Fatalf("%s %s: details %v do not name %q", req.method, options, r.fields(), field)
				}
			} else if req.method == "POST" {
				want(t, r, 201, "")
			} else {
				want(t, r, status, "")
			}
		}
	}
	hdr := func(name, value string) string {
		b, _ := json.Marshal(map[string]string{name: value})
		return `"headers": ` + string(b)
	}
	// Names the delivery sets itself, in any case; hop-by-hop headers.
	for _, name := range []string{"Content-Type", "content-length", "Content-Encoding", "Host", "HOST", "User-Agent", "X-Zaits-Signature", "x-zaits-event",
		"X-Zaits-Anything", "webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP", "webhook-x", "Connection", "Keep-Alive", "Proxy-Authorization",
		"Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"} {
		f(hdr(name, "v"), 400, "headers."+name)
	}
	// Names that are not tokens, values that are not header values.
	for _, name := range []string{"", "X Bad", "X:Y", "X-Ä", "X\tY", "(x)", "x/y", strings.Repeat("a", 257)} {
		f(hdr(name, "v"), 400, "headers.")
	}
	for _, value := range []string{"a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", strings.Repeat("a", 1025), strings.Repeat("é", 513)} {
		f(hdr("X-Ok", value), 400, "headers.X-Ok")
	}
	f(`"headers": {"X-A": 1}`, 400, "headers.X-A")
	f(`"headers": {"X-A": null}`, 400, "headers.X-A")
	f(`"headers": {"X-A": "1", "x-a": "2"}`, 400, "headers.x-a")
	f(`"headers": ["X-A: 1"]`, 400, "headers")
	f(`"headers": "X-A: 1"`, 400, "headers")
	var many []string
	for i := range 21 {
		many = append(many, fmt.Sprintf(`"X-H%d": "v"`, i))
	}
	f(`"headers": {`+strings.Join(many, ",")+`}`, 400, "headers")
	f(`"headers": {`+strings.Join(many[:20], ",")+`}`, 200, "")
	f(hdr(strings.Repeat("a", 256), strings.Repeat("é", 512)), 200, "") // at the limits: 256-character name, 1024-byte value
	f(hdr("Authorization", "Bearer\tx y \"quoted\" ü"), 200, "")

	// Filters: unknown operators, wrong types, bad paths, size.
	f(`"filter": {"data.amount": {"$regex": "1"}}`, 400, "filter.data.amount.$regex")
	f(`"filter": {"$nor": [{"type": "a"}]}`, 400, "filter.$nor")
	f(`"filter": {"data.amount": {"$gte": "100", "$lt": true}}`, 400, "filter.data.amount.$lt")
	f(`"filter": {"data.amount": {"$in": "EUR"}}`, 400, "filter.data.amount.$in")
	f(`"filter": {"data.amount": {"$exists": 1}}`, 400, "filter.data.amount.$exists")
	f(`"filter": {"data.amount": [1, 2]}`, 400, "filter.data.amount")
	f(`"filter": {"amount": 1}`, 400, "filter.amount")
	f(`"filter": {"$and": [{"type": "a"}, {"data.x": {"$foo": 1}}]}`, 400, "filter.$and[1].data.x.$foo")
	f(`"filter": []`, 400, "filter")
	f(`"filter": "type = 'a'"`, 400, "filter")
	f(`"filter": 5`, 400, "filter")
	big := `{"data.x": "` + strings.Repeat("a", schemas.MaxFilterBytes) + `"}`
	f(`"filter": `+big, 400, "filter")
	f(`"filter": {"data.x": "`+strings.Repeat("a", schemas.MaxFilterBytes-len(`{"data.x":""}`))+`"}`, 200, "")
	f(`"filter": {"$or": [{"type": "document.signed"}, {"data.amount": {"$gte": 100, "$lt": 1e6}}], "$not": {"data.test": true}}`, 200, "")

	// Rate limits: whole numbers from 1 to 10,000.
	for _, v := range []string{"0", "-1", "10001", "1.5", `"5"`, "true", "[5]", "1e3"} {
		f(`"rate_limit": `+v, 400, "rate_limit")
	}
	f(`"rate_limit": 1`, 200, "")
	f(`"rate_limit": 10000`, 200, "")
	// All problems at once.
	r := call(t, g, keyA, "POST", ep, `{"url": "https://a.example.com", "events": ["*"], "headers": {"Host": "x"}, "filter": {"x": 1}, "rate_limit": 0}`)
	want(t, r, 400, "validation_error")
	if got := fmt.Sprint(r.fields()); got != "[headers.Host filter.x rate_limit]" {
		t.Fatalf("fields %s", got)
	}
}

// The request schemas of the OpenAPI document agree with the decoder on
// the options: what the gateway accepts is valid, and what the document
// refuses, the gateway refuses too.
func TestOpenAPIRequestSchemasOfTheOptions(t *testing.T) {
	s := openAPISpec(t)
	compile := func(name string) *jsonschema.Schema {
		sch, err := s.compiler.Compile(specURL + "#/components/schemas/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return sch
	}
	createSchema, updateSchema := compile("EndpointCreate"), compile("EndpointUpdate")
	f := func(body string, wantOK bool) {
		t.Helper()
		for _, create := range []bool{true, false} {
			b := body
			if create {
				b = `{"url": "https://a.example.com", "events": ["*"], ` + strings.TrimPrefix(body, "{")
			}
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			sch := updateSchema
			if create {
				sch = createSchema
			}
			docOK := sch.Validate(v) == nil
			_, rerr := decodeEndpoint([]byte(b), create, urlPolicy{})
			if docOK != wantOK || (rerr == nil) != wantOK {
				t.Fatalf("%s (create %v): document says %v, gateway says %v, want %v", b, create, docOK, rerr, wantOK)
			}
		}
	}
	f(`{"headers": {"Authorization": "Bearer x", "X-Tenant": "a\tb"}, "filter": {"data.amount": {"$gte": 100}, "$or": [{"type": "document.signed"}, {"data.items.0.sku": {"$in": ["a", 1, null]}}], "$not": {"data.x": {"$exists": true}}}, "rate_limit": 5}`, true)
	f(`{"headers": null, "filter": null, "rate_limit": null}`, true)
	f(`{"headers": {}, "filter": {}}`, true)
	f(`{"headers": {"X Bad": "v"}}`, false)
	f(`{"headers": {"X-A": "a\nb"}}`, false)
	f(`{"headers": {"X-A": 1}}`, false)
	f(`{"filter": {"amount": 1}}`, false)
	f(`{"filter": {"data.amount": {"$regex": "x"}}}`, false)
	f(`{"filter": {"data.amount": {"$gt": true}}}`, false)
	f(`{"filter": {"data.amount": {"$in": []}}}`, false)
	f(`{"filter": {"$and": []}}`, false)
	f(`{"filter": {"data.amount": {}}}`, false)
	f(`{"rate_limit": 0}`, false)
	f(`{"rate_limit": 10001}`, false)
}

// A test send goes through -delivery.proxy like every delivery.
func TestTestSendGoesThroughTheProxy(t *testing.T) {
	kc := testenv.Kafka(t)
	proxy := testenv.StartConnectProxy(t, "", "")
	g := startAPI(t, testConfig(kc, receiverConfig, func(c *Config) { c.Delivery.Proxy = proxy.URL("", "") }))
	rc := newReceiver(t, 200)
	id := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["*"], "headers": {"X-Tenant": "acme"}}`, rc.url))["id"].(string)
	r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
	want(t, r, 200, "")
	req, _ := rc.last()
	if r.data()["test_sent"] != true || proxy.Connects.Load() != 1 || !proxy.Tunnelled(req.RemoteAddr) || req.Header.Get("X-Tenant") != "acme" {
		t.Fatalf("test send: %s; %d CONNECTs; from %s; headers %v", r.body, proxy.Connects.Load(), req.RemoteAddr, req.Header)
	}
	if _, port, _ := net.SplitHostPort(req.Host); proxy.Targets()[0] != "127.0.0.1:"+port {
		t.Fatalf("CONNECT %v", proxy.Targets())
	}
}
