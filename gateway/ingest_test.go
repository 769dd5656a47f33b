package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

type envelope struct {
	Success bool
	Error   struct {
		Code, Message string
		Details       []schemas.FieldIssue
	}
	Data struct {
		ID, Status         string
		Accepted, Rejected int
		Results            []struct {
			Index      int
			Status, ID string
			Error      *struct {
				Code    string
				Details []schemas.FieldIssue
			}
		}
	}
}

func decodeEnvelope(t *testing.T, body string) envelope {
	t.Helper()
	var v envelope
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not the JSON envelope: %s", body)
	}
	return v
}

func fields(d []schemas.FieldIssue) string {
	var out []string
	for _, x := range d {
		out = append(out, x.Field)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestEventRequestRejectsEveryInvalidFieldWithTheEnvelope(t *testing.T) {
	e := newIngestEnv(t, []string{"acct_a"})
	big := `{"type":"ocr.completed","account_id":"a","data":{"x":"` + strings.Repeat("x", schemas.MaxEventDataBytes) + `"}}`
	f := func(token, body string, wantStatus int, wantCode, wantFields string) {
		t.Helper()
		code, resp := e.post("/v1/events", token, body)
		v := decodeEnvelope(t, resp)
		if code != wantStatus || v.Success || v.Error.Code != wantCode || fields(v.Error.Details) != wantFields {
			t.Errorf("%.80s → %d %s; want %d %s fields %q", body, code, resp, wantStatus, wantCode, wantFields)
		}
	}
	s := e.service
	f(s, `nope`, 400, "invalid_json", "")
	f(s, `[1]`, 400, "invalid_json", "")
	f(s, `{}`, 400, "validation_error", "account_id,data,type")
	f(s, `{"type":"document.nope","account_id":"a","data":{}}`, 400, "validation_error", "type")
	f(s, `{"type":7,"account_id":"a","data":{}}`, 400, "validation_error", "type")
	f(s, `{"type":"ocr.completed","data":{}}`, 400, "validation_error", "account_id") // a service token names the account
	f(s, `{"type":"ocr.completed","account_id":"a b","data":{}}`, 400, "validation_error", "account_id")
	f(s, `{"type":"ocr.completed","account_id":"","data":{}}`, 400, "validation_error", "account_id")
	f(s, `{"type":"ocr.completed","account_id":"`+strings.Repeat("a", 129)+`","data":{}}`, 400, "validation_error", "account_id")
	f(s, `{"id":"","type":"ocr.completed","account_id":"a","data":{}}`, 400, "validation_error", "id")
	f(s, `{"id":"evt/1","type":"ocr.completed","account_id":"a","data":{}}`, 400, "validation_error", "id")
	f(s, `{"id":12,"type":"ocr.completed","account_id":"a","data":{}}`, 400, "validation_error", "id")
	f(s, `{"type":"ocr.completed","account_id":"a","created":"now","data":{}}`, 400, "validation_error", "created")
	f(s, `{"type":"ocr.completed","account_id":"a","created":1.5,"data":{}}`, 400, "validation_error", "created")
	f(s, `{"type":"ocr.completed","account_id":"a","created":-1,"data":{}}`, 400, "validation_error", "created")
	f(s, `{"type":"ocr.completed","account_id":"a","data":[1]}`, 400, "validation_error", "data")
	f(s, `{"type":"ocr.completed","account_id":"a","data":"x"}`, 400, "validation_error", "data")
	f(s, `{"type":"ocr.completed","account_id":"a"}`, 400, "validation_error", "data")
	f(s, `{"type":"ocr.completed","account_id":"a","data":{},"colour":1}`, 400, "validation_error", "colour")
	f(s, `{"id":"","type":"x","account_id":"a b","created":"y","data":1,"z":0}`, 400, "validation_error", "account_id,created,data,id,type,z")
	f(s, big, 400, "validation_error", "data")
	f(s, strings.Replace(big, `"x":"`, `"x":"`+strings.Repeat("y", 8<<10), 1), 413, "payload_too_large", "")
	f("", `{"type":"ocr.completed","account_id":"a","data":{}}`, 401, "unauthorized", "")
	f("zk_wrong", `{"type":"ocr.completed","account_id":"a","data":{}}`, 401, "unauthorized", "")
	// An account API key publishes for its own account only.
	k := e.keys["acct_a"]
	f(k, `{"type":"ocr.completed","account_id":"acct_b","data":{}}`, 403, "forbidden", "account_id")
	if code, body := e.post("/v1/events", k, `{"type":"ocr.completed","account_id":"acct_a","data":{}}`); code != 202 {
		t.Errorf("own account named explicitly: %d %s", code, body)
	}

	code, _ := e.post("/v1/events", s, `{"type":"ocr.completed","account_id":"a","data":{}}`)
	req, _ := http.NewRequest("POST", "http://"+e.g.Addr()+"/v1/events", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+s)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code != 202 || resp.StatusCode != 415 {
		t.Errorf("valid event %d, text/plain %d; want 202 and 415", code, resp.StatusCode)
	}
}

func TestAcceptedEventIsOnTheTopicWhenThe202Arrives(t *testing.T) {
	e := newIngestEnv(t, []string{"acct_a"})
	id := e.accept(e.keys["acct_a"], `{"type":"user.credits.low","data":{"left":3}}`)
	msgs, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the events topic right after the 202, want 1", len(msgs))
	}
	var ev schemas.Event
	if err := json.Unmarshal(msgs[0].Value, &ev); err != nil || ev.ID != id || ev.AccountID != "acct_a" || string(msgs[0].Key) != "acct_a" ||
		ev.Type != "user.credits.low" || string(ev.Data) != `{"left":3}` || time.Since(time.Unix(ev.Created, 0)) > time.Minute {
		t.Fatalf("stored %s key %s (err %v); want the event %s of acct_a", msgs[0].Value, msgs[0].Key, err, id)
	}
}

func TestBatchAnswersOneResultPerEvent(t *testing.T) {
	e := newIngestEnv(t, []string{"acct_a"})
	k := e.keys["acct_a"]
	good := func(id string) string { return `{"id":"` + id + `","type":"ocr.completed","data":{}}` }

	// Mixed: the valid events are stored, each invalid one is named by index.
	code, body := e.post("/v1/events/batch", k, `{"events":[`+good("b_0")+`,{"type":"nope","data":{}},`+good("b_2")+`,{"type":"ocr.completed","account_id":"acct_z","data":{}},7]}`)
	v := decodeEnvelope(t, body)
	if code != 207 || v.Success || v.Data.Accepted != 2 || v.Data.Rejected != 3 || len(v.Data.Results) != 5 {
		t.Fatalf("mixed batch: %d %s", code, body)
	}
	want := []string{"accepted b_0", "rejected validation_error type", "accepted b_2", "rejected forbidden account_id", "rejected invalid_json "}
	for i, r := range v.Data.Results {
		got := r.Status + " " + r.ID
		if r.Error != nil {
			got = r.Status + " " + r.Error.Code + " " + fields(r.Error.Details)
		}
		if r.Index != i || got != want[i] {
			t.Errorf("result %d = index %d %q, want %q", i, r.Index, got, want[i])
		}
	}
	msgs, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, m := range msgs {
		var ev schemas.Event
		json.Unmarshal(m.Value, &ev)
		stored = append(stored, ev.ID)
	}
	sort.Strings(stored)
	if strings.Join(stored, " ") != "b_0 b_2" {
		t.Errorf("stored %v, want b_0 b_2", stored)
	}

	// All accepted: 202.
	code, body = e.post("/v1/events/batch", k, `{"events":[`+good("c_0")+`,`+good("c_1")+`]}`)
	if v := decodeEnvelope(t, body); code != 202 || !v.Success || v.Data.Accepted != 2 || v.Data.Results[1].ID != "c_1" {
		t.Errorf("valid batch: %d %s", code, body)
	}

	// Nothing accepted, or the batch itself is wrong: the error envelope.
	f := func(body string, wantStatus int, wantCode, wantFields string) {
		t.Helper()
		code, resp := e.post("/v1/events/batch", k, body)
		v := decodeEnvelope(t, resp)
		if code != wantStatus || v.Success || v.Error.Code != wantCode || fields(v.Error.Details) != wantFields {
			t.Errorf("%.80s → %d %.300s; want %d %s %q", body, code, resp, wantStatus, wantCode, wantFields)
		}
	}
	f(`{"events":[{"type":"x","data":{}},{"data":1,"type":"ocr.completed"}]}`, 400, "validation_error", "events[0].type,events[1].data")
	f(`{"events":[{"type":"ocr.completed","account_id":"acct_b","data":{}}]}`, 403, "forbidden", "events[0].account_id")
	f(`{"events":[]}`, 400, "validation_error", "events")
	f(`{"events":{}}`, 400, "validation_error", "events")
	f(`{}`, 400, "validation_error", "events")
	f(`{"events":[],"more":1}`, 400, "validation_error", "more")
	f(`[`, 400, "invalid_json", "")
	f(`{"events":[`+strings.Repeat(good("d")+",", schemas.MaxBatchEvents)+good("d")+`]}`, 400, "validation_error", "events")
	f(`{"events":["`+strings.Repeat("x", MaxBatchBytes)+`"]}`, 413, "payload_too_large", "")
}

// A broker that does not answer: the request waits at most the ingest
// timeout, answers 503 with Retry-After, accepts nothing, and names every
// event's id (the producer's or the generated one) to retry it with.
func TestEventRequestAnswers503WhenKafkaDoesNotAcknowledge(t *testing.T) {
	down := &broker.Config{Brokers: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), TopicPrefix: "down", DialTimeout: 200 * time.Millisecond}
	in := newIngester(IngestConfig{Timeout: 400 * time.Millisecond, Linger: time.Millisecond, RetryAfter: 2 * time.Second}, down, newEventCounters(nil), nil)
	defer in.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/v1/events" {
			in.single(ctx, principal{Service: true})
		} else {
			in.batch(ctx, principal{Service: true})
		}
	}}
	go srv.Serve(ln)
	defer srv.Shutdown()
	idRE := regexp.MustCompile(`^not acknowledged in time; retry with id (evt_[A-Za-z0-9_-]{20,})$`)
	f := func(path, body string, fields ...string) []string {
		t.Helper()
		start := time.Now()
		resp, err := http.Post("http://"+ln.Addr().String()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v envelope
		json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" || v.Error.Code != "unavailable" || v.Success {
			t.Errorf("%s: %d Retry-After %q %+v; want 503, Retry-After 2, unavailable", path, resp.StatusCode, resp.Header.Get("Retry-After"), v)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s; the ingest timeout is 400ms", path, d)
		}
		var ids []string
		for i, d := range v.Error.Details {
			m := idRE.FindStringSubmatch(d.Issue)
			if i >= len(fields) || d.Field != fields[i] || m == nil {
				t.Fatalf("%s: details %+v, want an id to retry with for each of %v", path, v.Error.Details, fields)
			}
			ids = append(ids, m[1])
		}
		if len(ids) != len(fields) {
			t.Fatalf("%s: details %+v, want %v", path, v.Error.Details, fields)
		}
		if path == "/v1/events" && resp.Header.Get(HeaderEventID) != ids[0] {
			t.Errorf("%s: %s %q, details name %s", path, HeaderEventID, resp.Header.Get(HeaderEventID), ids[0])
		}
		return ids
	}
	if err := in.ready(time.Now()); err != nil {
		t.Fatalf("ready before any write: %v", err)
	}
	f("/v1/events", `{"type":"ocr.completed","account_id":"a","data":{}}`, "id")
	// Readiness says so (a load balancer stops sending), for failingFor.
	if err := in.ready(time.Now()); err == nil || !strings.Contains(err.Error(), "event writes to Kafka are failing") {
		t.Errorf("ready after a failed write: %v", err)
	}
	if err := in.ready(time.Now().Add(failingFor + time.Second)); err != nil {
		t.Errorf("ready %s after the last failed write: %v", failingFor+time.Second, err)
	}
	if ids := f("/v1/events", `{"id":"evt_mine_0123456789abcdefghij","type":"ocr.completed","account_id":"a","data":{}}`, "id"); ids[0] != "evt_mine_0123456789abcdefghij" {
		t.Errorf("the producer's id came back as %s", ids[0])
	}
	ids := f("/v1/events/batch", `{"events":[{"type":"ocr.completed","account_id":"a","data":{}},{"id":"evt_mine_0123456789abcdefghij","type":"ocr.completed","account_id":"a","data":{}}]}`, "events[0].id", "events[1].id")
	if ids[0] == ids[1] || ids[1] != "evt_mine_0123456789abcdefghij" {
		t.Errorf("batch ids %v", ids)
	}
}

// A private broker is stopped and started again: while it is down every
// request answers 503 with Retry-After within the ingest timeout; every
// event answered 202 is on the topic afterwards.
func TestEventRequestsDuringAKafkaOutage(t *testing.T) {
	k := testenv.StartKafka(t)
	t.Setenv("ZAITS_TEST_KAFKA", k.Addr)
	e := newIngestEnv(t, nil, func(c *Config) { c.Ingest.Timeout = time.Second })
	event := func(n int) string {
		return fmt.Sprintf(`{"id":"o_%d","type":"ocr.completed","account_id":"acct_%d","data":{}}`, n, n%7)
	}
	var accepted []string
	n := 0
	acceptOne := func() error { // a fresh or restarted broker may need a moment
		n++
		code, body := e.post("/v1/events", e.service, event(n))
		if code != 202 {
			return fmt.Errorf("%d %s", code, body)
		}
		accepted = append(accepted, fmt.Sprintf("o_%d", n))
		return nil
	}
	testenv.Eventually(t, 60*time.Second, acceptOne)

	k.Stop()
	f := func(path, body string) {
		t.Helper()
		start := time.Now()
		code, h, resp := e.postH(path, e.service, body)
		if code != 503 || h.Get("Retry-After") != "1" || decodeEnvelope(t, resp).Error.Code != "unavailable" {
			t.Errorf("%s with Kafka down: %d Retry-After %q %s", path, code, h.Get("Retry-After"), resp)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %s with a 1s ingest timeout", path, d)
		}
	}
	f("/v1/events", event(50))
	f("/v1/events/batch", `{"events":[`+event(51)+`,`+event(52)+`]}`)

	k.Start()
	n = 100
	testenv.Eventually(t, 90*time.Second, acceptOne)
	msgs, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, m := range msgs {
		var ev schemas.Event
		json.Unmarshal(m.Value, &ev)
		stored[ev.ID] = true
	}
	for _, id := range accepted {
		if !stored[id] {
			t.Errorf("event %s was answered 202 but is not on the topic", id)
		}
	}
}
