package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Credentials of the tests: two accounts and one ingestion service.
var (
	keyA, entryA     = mustMint("acct_a", false)
	keyB, entryB     = mustMint("acct_b", false)
	svcKey, svcEntry = mustMint("ingest", true)
)

func mustMint(owner string, service bool) (string, string) {
	k, e, err := MintKey(owner, service)
	if err != nil {
		panic(err)
	}
	return k, e
}

// testConfig is a production-strict configuration (no -dev) with the test
// credentials and no rate limit; mutate adjusts it.
func testConfig(kc *broker.Config, mutate ...func(*Config)) Config {
	cfg := Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true, RotationOverlap: 24 * time.Hour},
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", APIKeys: entryA + "," + entryB, ServiceTokens: svcEntry, RateLimit: -1}
	for _, m := range mutate {
		m(&cfg)
	}
	return cfg
}

// receiverConfig lets endpoints and test deliveries reach 127.0.0.1.
func receiverConfig(c *Config) {
	c.AllowHTTP, c.AllowPrivate = true, true
	c.Delivery = &dispatcher.ClientConfig{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}

// startAPI starts a gateway with cfg and stops it when the test ends.
func startAPI(t testing.TB, cfg Config) *Gateway {
	t.Helper()
	g, err := New(cfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAPI(t, g) })
	return g
}

func stopAPI(t testing.TB, g *Gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// response is one answer, already validated against the OpenAPI document.
type response struct {
	status int
	header http.Header
	body   []byte
	v      map[string]any
}

func (r response) data() map[string]any { d, _ := r.v["data"].(map[string]any); return d }
func (r response) list() []any          { d, _ := r.v["data"].([]any); return d }
func (r response) code() string {
	e, _ := r.v["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}
func (r response) fields() []string {
	e, _ := r.v["error"].(map[string]any)
	var out []string
	for _, d := range e["details"].([]any) {
		out = append(out, d.(map[string]any)["field"].(string))
	}
	return out
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call makes one request with key (none when empty); headers are name,
// value pairs. A body is sent as application/json unless a Content-Type
// header is given. Every response is validated against schemas/openapi.json.
func call(t testing.TB, g *Gateway, key, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+g.Addr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	if err := json.Unmarshal(b, &r.v); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v: %s", method, path, err, b)
	}
	if err := openAPISpec(t).validate(method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		t.Fatalf("%s %s = %d: %s", method, path, resp.StatusCode, b)
	}
	return r
}

// want fails unless r has status (and, for errors, the error code).
func want(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.code() != code) {
		t.Fatalf("got %d %s; want %d %s", r.status, r.body, status, code)
	}
}

const createBody = `{"url": "https://your-app.com/webhooks/zaits", "events": ["document.signed", "face.verified", "ocr.completed"], "description": "Main production webhook", "active": true}`

func create(t testing.TB, g *Gateway, key, body string) map[string]any {
	t.Helper()
	r := call(t, g, key, "POST", "/v1/webhooks/endpoints", body)
	want(t, r, 201, "")
	return r.data()
}

var (
	idRE = regexp.MustCompile(`^we_[A-Za-z0-9_-]{20,}$`)
	tsRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)
)

func TestEndpointCRUDRoundTrip(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))

	c := create(t, g, keyA, createBody)
	id := c["id"].(string)
	if !idRE.MatchString(id) || !strings.HasPrefix(c["secret"].(string), "whsec_") || !tsRE.MatchString(c["created_at"].(string)) {
		t.Fatalf("create: %v", c)
	}
	if c["active"] != true || c["ordering"] != "default" || c["version"] != 1.0 || c["last_delivery"] != nil || c["success_rate"] != nil {
		t.Fatalf("create: %v", c)
	}
	if created, _ := time.Parse(time.RFC3339, c["created_at"].(string)); time.Since(created) > time.Minute {
		t.Fatalf("created_at %v is not now", created)
	}

	r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, "")
	want(t, r, 200, "")
	if _, ok := r.data()["secret"]; ok {
		t.Fatal("GET shows the secret")
	}
	if r.header.Get("ETag") != `"1"` || r.data()["description"] != "Main production webhook" {
		t.Fatalf("GET: %s %s", r.header.Get("ETag"), r.body)
	}

	r = call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"events": ["document.signed", "document.expired", "face.verified"], "active": false, "ordering": "strict"}`)
	want(t, r, 200, "")
	d := r.data()
	if fmt.Sprint(d["events"]) != "[document.signed document.expired face.verified]" || d["active"] != false || d["ordering"] != "strict" ||
		d["version"] != 2.0 || d["url"] != "https://your-app.com/webhooks/zaits" || d["description"] != "Main production webhook" || !tsRE.MatchString(d["updated_at"].(string)) {
		t.Fatalf("PUT: %s", r.body)
	}
	// If-Match with a stale version changes nothing.
	want(t, call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"description": "x"}`, "If-Match", `"1"`), 409, "conflict")
	r = call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"description": "second"}`, "If-Match", `"2"`)
	want(t, r, 200, "")
	if r.data()["description"] != "second" || r.header.Get("ETag") != `"3"` {
		t.Fatalf("PUT with If-Match: %s", r.body)
	}

	r = call(t, g, keyA, "GET", "/v1/webhooks/endpoints", "")
	want(t, r, 200, "")
	if len(r.list()) != 1 || r.list()[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %s", r.body)
	}

	// DELETE honours If-Match too: a stale version deletes nothing.
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id, "", "If-Match", `"2"`), 409, "conflict")
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id, "", "If-Match", `"x"`), 400, "validation_error")
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""), 200, "")
	r = call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id, "", "If-Match", `"3"`)
	want(t, r, 200, "")
	if r.data()["message"] != "Webhook endpoint deleted successfully" || r.data()["endpoint_id"] != id {
		t.Fatalf("DELETE: %s", r.body)
	}
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""), 404, "endpoint_not_found")
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id, ""), 404, "endpoint_not_found")
	want(t, call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"active": true}`), 404, "endpoint_not_found")

	r = call(t, g, keyA, "GET", "/v1/webhooks/events", "")
	want(t, r, 200, "")
	var got struct {
		Data struct{ Events []schemas.EventType }
	}
	if err := json.Unmarshal(r.body, &got); err != nil || !reflect.DeepEqual(got.Data.Events, schemas.Catalogue) || len(got.Data.Events) != 10 {
		t.Fatalf("events: %s", r.body)
	}

	// Unknown routes and wrong methods use the envelope (and are documented).
	want(t, call(t, g, keyA, "PATCH", "/v1/webhooks/endpoints", ""), 405, "method_not_allowed")
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/nope", ""), 404, "not_found")
	want(t, call(t, g, keyA, "GET", "/v1/webhooks/endpoints/", ""), 404, "not_found")
	want(t, call(t, g, keyA, "POST", "/V1/webhooks/endpoints", createBody), 404, "not_found")
}

func TestListFiltersAndPagination(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	var all []string
	for i := range 7 {
		c := create(t, g, keyA, fmt.Sprintf(`{"url": "https://example.com/h/%d", "events": ["*"], "active": %v}`, i, i%2 == 0))
		all = append(all, c["id"].(string))
	}
	f := func(query string, wantIDs []string, page, perPage, total int) {
		t.Helper()
		r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints"+query, "")
		want(t, r, 200, "")
		var ids []string
		for _, it := range r.list() {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		p := r.v["pagination"].(map[string]any)
		if fmt.Sprint(ids) != fmt.Sprint(wantIDs) || p["page"] != float64(page) || p["per_page"] != float64(perPage) || p["total"] != float64(total) {
			t.Fatalf("%s: ids %v pagination %v; want %v page %d per_page %d total %d", query, ids, p, wantIDs, page, perPage, total)
		}
	}
	// Oldest first; creation within one second is ordered by id.
	r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints?per_page=100", "")
	var listed []string
	for _, it := range r.list() {
		listed = append(listed, it.(map[string]any)["id"].(string))
	}
	if len(listed) != 7 {
		t.Fatalf("list: %s", r.body)
	}
	active := []string{}
	inactive := []string{}
	for _, id := range listed {
		e, _ := g.store.Get(id)
		if e.Active {
			active = append(active, id)
		} else {
			inactive = append(inactive, id)
		}
	}
	if len(active) != 4 || len(inactive) != 3 {
		t.Fatalf("active %v inactive %v", active, inactive)
	}
	f("", listed, 1, 25, 7)
	f("?active=true", active, 1, 25, 4)
	f("?active=false", inactive, 1, 25, 3)
	f("?per_page=3", listed[:3], 1, 3, 7)
	f("?per_page=3&page=2", listed[3:6], 2, 3, 7)
	f("?per_page=3&page=3", listed[6:], 3, 3, 7)
	f("?per_page=3&page=4", nil, 4, 3, 7)
	f("?page=9223372036854775807&per_page=100", nil, 9223372036854775807, 100, 7)
	f("?active=true&per_page=2&page=2", active[2:], 2, 2, 4)
	// The other account sees none of them.
	r = call(t, g, keyB, "GET", "/v1/webhooks/endpoints", "")
	if len(r.list()) != 0 || r.v["pagination"].(map[string]any)["total"] != 0.0 {
		t.Fatalf("account B lists %s", r.body)
	}
	for _, id := range all {
		if !strings.Contains(fmt.Sprint(listed), id) {
			t.Fatalf("%s created but not listed", id)
		}
	}
}

func TestTenancy(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	id := create(t, g, keyA, createBody)["id"].(string)
	missing := endpoint.NewID()
	// Account B gets exactly what a non-existent id gets, for every route.
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/webhooks/endpoints/%s", ""},
		{"PUT", "/v1/webhooks/endpoints/%s", `{"active": false}`},
		{"DELETE", "/v1/webhooks/endpoints/%s", ""},
		{"POST", "/v1/webhooks/endpoints/%s/test", `{"event_type": "document.signed"}`},
		{"POST", "/v1/webhooks/endpoints/%s/secret/rotate", ""},
		{"GET", "/v1/webhooks/endpoints/%s/deliveries", ""},
		{"GET", "/v1/webhooks/endpoints/%s/deliveries/del_aaaaaaaaaaaaaaaaaaaaaaaaaa", ""},
		{"GET", "/v1/webhooks/endpoints/%s/stats", ""},
		{"DELETE", "/v1/webhooks/endpoints/%s/secret/previous", ""},
		{"POST", "/v1/webhooks/endpoints/%s/deliveries/del_aaaaaaaaaaaaaaaaaaaaaaaaaa/resend", ""},
		{"POST", "/v1/webhooks/endpoints/%s/recover", `{"since": "2026-11-30T00:00:00Z"}`},
		{"POST", "/v1/webhooks/endpoints/%s/replay", `{"since": "2026-11-30T00:00:00Z"}`},
		{"GET", "/v1/webhooks/endpoints/%s/dead-letters", ""},
		{"POST", "/v1/webhooks/endpoints/%s/dead-letters/replay", ""},
		{"GET", "/v1/webhooks/endpoints/%s/jobs", ""},
		{"GET", "/v1/webhooks/endpoints/%s/jobs/job_aaaaaaaaaaaaaaaaaaaa", ""},
		{"POST", "/v1/webhooks/endpoints/%s/jobs/job_aaaaaaaaaaaaaaaaaaaa/cancel", ""},
	}
	for _, rt := range routes {
		other := call(t, g, keyB, rt.method, fmt.Sprintf(rt.path, id), rt.body)
		none := call(t, g, keyB, rt.method, fmt.Sprintf(rt.path, missing), rt.body)
		want(t, other, 404, "endpoint_not_found")
		if strings.ReplaceAll(string(other.body), id, "ID") != strings.ReplaceAll(string(none.body), missing, "ID") {
			t.Fatalf("%s %s: another account's endpoint answers %s, a missing one %s", rt.method, rt.path, other.body, none.body)
		}
	}
	// Nothing changed for A.
	r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, "")
	want(t, r, 200, "")
	if r.data()["version"] != 1.0 || r.data()["active"] != true {
		t.Fatalf("account B changed A's endpoint: %s", r.body)
	}
	if r := call(t, g, keyB, "GET", "/v1/webhooks/endpoints", ""); len(r.list()) != 0 {
		t.Fatalf("account B lists A's endpoint: %s", r.body)
	}
}

func TestPersistenceAcrossRestartAndTwoInstancesConverge(t *testing.T) {
	kc := testenv.Kafka(t)
	g1 := startAPI(t, testConfig(kc))
	g2 := startAPI(t, testConfig(kc))

	id := create(t, g1, keyA, createBody)["id"].(string)
	start := time.Now()
	testenv.Eventually(t, time.Second, func() error {
		if r := call(t, g2, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""); r.status != 200 {
			return fmt.Errorf("instance 2: %d", r.status)
		}
		return nil
	})
	t.Logf("instance 2 saw the create after %s", time.Since(start))
	want(t, call(t, g2, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"description": "from instance 2"}`), 200, "")
	testenv.Eventually(t, time.Second, func() error {
		if r := call(t, g1, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""); r.data()["description"] != "from instance 2" {
			return fmt.Errorf("instance 1: %s", r.body)
		}
		return nil
	})

	// Concurrent updates based on the same version: exactly one wins.
	var wg sync.WaitGroup
	results := make([]response, 2)
	for i, g := range []*Gateway{g1, g2} {
		wg.Go(func() {
			results[i] = call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, fmt.Sprintf(`{"description": "race %d"}`, i), "If-Match", "2")
		})
	}
	wg.Wait()
	if s := []int{results[0].status, results[1].status}; !(s[0] == 200 && s[1] == 409 || s[0] == 409 && s[1] == 200) {
		t.Fatalf("concurrent updates: %d %s / %d %s", s[0], results[0].body, s[1], results[1].body)
	}
	winner := results[0]
	if winner.status != 200 {
		winner = results[1]
	}
	testenv.Eventually(t, time.Second, func() error {
		for _, g := range []*Gateway{g1, g2} {
			if r := call(t, g, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""); r.data()["description"] != winner.data()["description"] || r.data()["version"] != 3.0 {
				return fmt.Errorf("%s", r.body)
			}
		}
		return nil
	})

	// A restarted instance serves the same state.
	id2 := create(t, g1, keyB, `{"url": "https://b.example.com/h", "events": ["face.*"], "active": false}`)["id"].(string)
	want(t, call(t, g1, keyA, "DELETE", "/v1/webhooks/endpoints/"+id, ""), 200, "")
	before := call(t, g1, keyB, "GET", "/v1/webhooks/endpoints", "")
	stopAPI(t, g1)
	g3 := startAPI(t, testConfig(kc))
	after := call(t, g3, keyB, "GET", "/v1/webhooks/endpoints", "")
	if string(before.body) != string(after.body) || len(after.list()) != 1 || after.list()[0].(map[string]any)["id"] != id2 {
		t.Fatalf("before restart %s\nafter %s", before.body, after.body)
	}
	want(t, call(t, g3, keyA, "GET", "/v1/webhooks/endpoints/"+id, ""), 404, "endpoint_not_found")
}

func TestAuthAndRateLimit(t *testing.T) {
	kc := testenv.Kafka(t)
	g := startAPI(t, testConfig(kc))
	f := func(key, header string, status int, code string) {
		t.Helper()
		r := call(t, g, key, "GET", "/v1/webhooks/endpoints", "", "Authorization", header)
		want(t, r, status, code)
	}
	f("", "", 401, "unauthorized")
	f("", "Bearer ", 401, "unauthorized")
	f("", "Bearer zk_wrong", 401, "unauthorized")
	f("", "Basic "+keyA, 401, "unauthorized")
	f("", keyA, 401, "unauthorized")
	f("", "Bearer "+keyA+"x", 401, "unauthorized")
	f("", "Bearer "+svcKey, 403, "forbidden")
	f("", "Bearer "+keyA, 200, "")
	f("", "bearer "+keyB, 200, "")
	// The document is public.
	r := call(t, g, "", "GET", "/v1/openapi.json", "")
	if r.status != 200 || r.v["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %d", r.status)
	}
	// The authenticate helper for ingestion: service tokens and keys.
	if p, ok := g.keys.lookup([]byte(svcKey)); !ok || !p.Service || p.AccountID != "" {
		t.Fatalf("service token → %+v %v", p, ok)
	}
	if p, ok := g.keys.lookup([]byte(keyB)); !ok || p.Service || p.AccountID != "acct_b" {
		t.Fatalf("key B → %+v %v", p, ok)
	}

	// Per-key token bucket: burst 3, then 429 with Retry-After; other keys unaffected.
	lim := startAPI(t, testConfig(kc, func(c *Config) { c.RateLimit, c.RateBurst = 0.5, 3 }))
	for range 3 {
		want(t, call(t, lim, keyA, "GET", "/v1/webhooks/events", ""), 200, "")
	}
	r = call(t, lim, keyA, "GET", "/v1/webhooks/events", "")
	want(t, r, 429, "rate_limited")
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After %q, want 2 (one token at 0.5/s)", ra)
	}
	want(t, call(t, lim, keyB, "GET", "/v1/webhooks/events", ""), 200, "")
	_, metrics := get(t, "http://"+lim.OpsAddr()+"/metrics")
	for _, m := range []string{`zaits_gateway_api_requests_total{route="listEvents",status="429"} 1`, `zaits_gateway_api_requests_total{route="listEvents",status="200"} 4`} {
		if !strings.Contains(metrics, m) {
			t.Fatalf("metrics lack %s", m)
		}
	}
}

func TestLimiterRefills(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(2, 2)
	l.now = func() time.Time { return now }
	f := func(wantOK bool, wantRetry int) {
		t.Helper()
		retry, ok := l.allow("k")
		if ok != wantOK || retry != wantRetry {
			t.Fatalf("allow = %d %v; want %d %v", retry, ok, wantRetry, wantOK)
		}
	}
	f(true, 0)
	f(true, 0)
	f(false, 1)
	now = now.Add(500 * time.Millisecond) // one token
	f(true, 0)
	f(false, 1)
	now = now.Add(time.Hour) // never more than the burst
	f(true, 0)
	f(true, 0)
	f(false, 1)
}

func TestConfigValidation(t *testing.T) {
	f := func(mutate func(*Config), wantErr string) {
		t.Helper()
		cfg := testConfig(&broker.Config{}, mutate)
		err := cfg.Validate()
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("Validate() = %v, want %q", err, wantErr)
		}
	}
	f(func(*Config) {}, "")
	f(func(c *Config) { c.APIKeys = "acct_a:" + strings.Repeat("a", 63) }, "gateway.api-keys")
	f(func(c *Config) { c.APIKeys = "acct_a" }, "gateway.api-keys")
	f(func(c *Config) { c.APIKeys = "bad owner:" + strings.Repeat("a", 64) }, "gateway.api-keys")
	f(func(c *Config) { c.ServiceTokens = "svc:zz" + strings.Repeat("a", 62) }, "gateway.service-tokens")
	f(func(c *Config) { c.RateLimit = 2e6 }, "gateway.rate-limit")
	f(func(c *Config) { c.APIKeys = entryA + "," + strings.Replace(entryA, "acct_a", "acct_x", 1) }, "configured twice")
	f(func(c *Config) { c.RateLimit, c.RateBurst = 1, -1 }, "gateway.rate-burst")
}

// receiver is a local webhook receiver recording what it gets.
type receiver struct {
	url    string
	mu     sync.Mutex
	got    []*http.Request
	bodies [][]byte
	status int
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{url: "http://" + ln.Addr().String() + "/hook", status: status}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got, rc.bodies = append(rc.got, r), append(rc.bodies, b)
		rc.mu.Unlock()
		w.WriteHeader(rc.status)
		if rc.status == 200 {
			io.WriteString(w, "OK")
		} else {
			io.WriteString(w, "failed "+strings.Repeat("x", 5000))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rc
}

func (rc *receiver) last() (*http.Request, []byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[len(rc.got)-1], rc.bodies[len(rc.bodies)-1]
}

func seedSig(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func standardSig(secret string, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, dispatcher.StandardKey([]byte(secret)))
	fmt.Fprintf(m, "%s.%s.%s", id, ts, body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestTestEndpointRotationAndAttempts(t *testing.T) {
	kc := testenv.Kafka(t)
	g := startAPI(t, testConfig(kc, receiverConfig))
	rc := newReceiver(t, 200)
	c := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["document.*"]}`, rc.url))
	id, secret1 := c["id"].(string), c["secret"].(string)

	r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", `{"event_type": "document.signed"}`)
	want(t, r, 200, "")
	d := r.data()
	if d["test_sent"] != true || d["response_status"] != 200.0 || d["response_body"] != "OK" || d["error"] != nil {
		t.Fatalf("test: %s", r.body)
	}
	req, body := rc.last()
	var p schemas.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.Type != "document.signed" || !strings.HasPrefix(p.ID, "evt_") || p.Created == 0 {
		t.Fatalf("payload %s: %v", body, err)
	}
	if req.Header.Get("X-Zaits-Signature") != seedSig(secret1, body) || req.Header.Get("X-Zaits-Event") != "document.signed" ||
		req.Header.Get("X-Zaits-Delivery") != d["delivery_id"] || req.Header.Get("X-Zaits-Delivery") != schemas.DeliveryID(p.ID, id) {
		t.Fatalf("headers %v", req.Header)
	}
	// Without a body, the sample event is of type "test".
	r = call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
	want(t, r, 200, "")
	if _, body := rc.last(); !bytes.Contains(body, []byte(`"type":"test"`)) {
		t.Fatalf("default test event %s", body)
	}

	// Rotation: a new secret; both sign during the overlap, the seed header
	// with the previous one (receivers that did not switch keep verifying),
	// X-Zaits-Signature-New with the new one.
	r = call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/secret/rotate", "")
	want(t, r, 200, "")
	secret2 := r.data()["secret"].(string)
	exp, err := time.Parse(time.RFC3339, r.data()["previous_secret_expires_at"].(string))
	if err != nil || secret2 == secret1 || time.Until(exp) < 23*time.Hour || time.Until(exp) > 24*time.Hour+time.Second {
		t.Fatalf("rotate: %s", r.body)
	}
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/secret/rotate", "{}"), 400, "validation_error")
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", `{"event_type": "ocr.completed"}`), 200, "")
	req, body = rc.last()
	sigs := strings.Fields(req.Header.Get("webhook-signature"))
	id1, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	if req.Header.Get("X-Zaits-Signature") != seedSig(secret1, body) || req.Header.Get("X-Zaits-Signature-New") != seedSig(secret2, body) || len(sigs) != 2 ||
		sigs[0] != standardSig(secret2, id1, ts, body) || sigs[1] != standardSig(secret1, id1, ts, body) {
		t.Fatalf("after rotation: X-Zaits-Signature %s, -New %s, webhook-signature %v", req.Header.Get("X-Zaits-Signature"), req.Header.Get("X-Zaits-Signature-New"), sigs)
	}
	// At most two live secrets: another rotation during the overlap is refused.
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/secret/rotate", ""), 409, "rotation_in_progress")
	// Retiring the previous secret ends the overlap: the seed header is the new secret's.
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id+"/secret/previous", ""), 200, "")
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", `{"event_type": "ocr.completed"}`), 200, "")
	req, body = rc.last()
	if req.Header.Get("X-Zaits-Signature") != seedSig(secret2, body) || req.Header.Get("X-Zaits-Signature-New") != "" || len(strings.Fields(req.Header.Get("webhook-signature"))) != 1 {
		t.Fatalf("after retiring: X-Zaits-Signature %s, -New %q, webhook-signature %s", req.Header.Get("X-Zaits-Signature"), req.Header.Get("X-Zaits-Signature-New"), req.Header.Get("webhook-signature"))
	}
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id+"/secret/previous", ""), 200, "") // nothing left to retire
	// Retired, the next rotation is allowed at once.
	want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/secret/rotate", ""), 200, "")
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id+"/secret/previous", ""), 200, "")

	// A receiver answering 500: sent, with the status and a truncated body.
	bad := newReceiver(t, 500)
	want(t, call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, fmt.Sprintf(`{"url": %q}`, bad.url)), 200, "")
	r = call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
	if d := r.data(); d["test_sent"] != true || d["response_status"] != 500.0 || d["error_code"] != "http_status" || len(d["response_body"].(string)) > 1024 {
		t.Fatalf("500: %s", r.body)
	}
	// A refused connection: not sent, 200 with the error.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String() + "/x"
	ln.Close()
	want(t, call(t, g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, fmt.Sprintf(`{"url": %q}`, closed)), 200, "")
	r = call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
	want(t, r, 200, "")
	if d := r.data(); d["test_sent"] != false || d["response_status"] != nil || d["error_code"] != "connection_error" || d["error"] == nil {
		t.Fatalf("refused: %s", r.body)
	}

	// Every test attempt is on <p>.attempts, marked as a test.
	attempts := readAttempts(t, kc, 6)
	for _, a := range attempts {
		if !a.Test || a.EndpointID != id || a.AccountID != "acct_a" || a.Attempt != 1 || a.AttemptedAt.IsZero() || a.EventOffset != -1 {
			t.Fatalf("attempt %+v", a)
		}
	}
	if a := attempts[5]; a.Outcome != schemas.OutcomeFailed || a.ErrorCode != "connection_error" || a.HTTPStatus != 0 {
		t.Fatalf("last attempt %+v", a)
	}
	if a := attempts[0]; a.Outcome != schemas.OutcomeSuccess || a.HTTPStatus != 200 || a.EventType != "document.signed" || a.DeliveryID != d["delivery_id"] {
		t.Fatalf("first attempt %+v", a)
	}
}

// readAttempts reads n attempt records of <p>.attempts, in write order
// (they share a key, so a partition).
func readAttempts(t *testing.T, kc *broker.Config, n int) []schemas.Attempt {
	t.Helper()
	r := kafkaReader(kc, kc.Topic(schemas.TopicAttempts))
	defer r.Close()
	var out []schemas.Attempt
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read attempts (%d of %d): %v", len(out), n, err)
		}
		var a schemas.Attempt
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func kafkaReader(kc *broker.Config, topic string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: kc.BrokerList(), Topic: topic, GroupID: "test-" + broker.RandomSuffix(8),
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
	})
}

// The ingestion routes' answers match the OpenAPI document too.
func TestIngestionResponsesMatchOpenAPI(t *testing.T) {
	g := startAPI(t, testConfig(testenv.Kafka(t)))
	ev := `{"type": "document.signed", "data": {"document_id": "doc_1"}}`
	r := call(t, g, keyA, "POST", "/v1/events", ev)
	want(t, r, 202, "")
	if r.data()["status"] != "accepted" || r.data()["id"] == "" {
		t.Fatalf("event: %s", r.body)
	}
	want(t, call(t, g, svcKey, "POST", "/v1/events", `{"type": "ocr.completed", "account_id": "acct_b", "data": {}}`), 202, "")
	want(t, call(t, g, keyA, "POST", "/v1/events", `{"type": "ocr.completed", "account_id": "acct_b", "data": {}}`), 403, "forbidden")
	want(t, call(t, g, keyA, "POST", "/v1/events", `{"type": "nope", "data": {}}`), 400, "validation_error")
	want(t, call(t, g, "", "POST", "/v1/events", ev), 401, "unauthorized")
	want(t, call(t, g, keyA, "POST", "/v1/events", ev, "Content-Type", "text/plain"), 415, "unsupported_media_type")
	want(t, call(t, g, keyA, "POST", "/v1/events/batch", `{"events": [`+ev+`, `+ev+`]}`), 202, "")
	r = call(t, g, keyA, "POST", "/v1/events/batch", `{"events": [`+ev+`, {"type": "nope", "data": {}}]}`)
	if r.status != 207 {
		t.Fatalf("mixed batch: %d %s", r.status, r.body)
	}
	want(t, call(t, g, keyA, "POST", "/v1/events/batch", `{"events": [{"type": "nope", "data": {}}]}`), 400, "validation_error")
	want(t, call(t, g, keyA, "GET", "/v1/events", ""), 405, "method_not_allowed")
}
