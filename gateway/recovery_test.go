package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// A dead delivery (five failed attempts) is resent: the same delivery id
// and body arrive once more, recorded as attempt 6 with trigger resend.
func TestResendADeadDelivery(t *testing.T) {
	s := startSystem(t)
	s.recv.answer("/dead", 500)
	id, _ := s.endpoint("/dead", "document.signed")
	s.publish("document.signed", 0, 1, "")
	rows := s.deliveries(id, "status=failed", 60*time.Second, func(rows []any, total int) error {
		if total != 1 || rows[0].(map[string]any)["attempts"] != 5.0 {
			return fmt.Errorf("%d failed deliveries %v", total, rows)
		}
		return nil
	})
	did := rows[0].(map[string]any)["id"].(string)
	failed := s.recv.at("/dead")
	if len(failed) != 5 {
		t.Fatalf("%d attempts arrived, want 5", len(failed))
	}
	// It is a dead letter.
	testenv.Eventually(t, 10*time.Second, func() error {
		r := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/dead-letters", "")
		want(t, r, 200, "")
		if l := r.list(); len(l) != 1 || l[0].(map[string]any)["delivery_id"] != did || l[0].(map[string]any)["attempts"] != 5.0 {
			return fmt.Errorf("dead letters %s", r.body)
		}
		return nil
	})

	s.recv.answer("/dead", 200)
	r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did+"/resend", "")
	want(t, r, 202, "")
	if d := r.data(); d["delivery_id"] != did || d["attempt"] != 6.0 || d["status"] != "queued" {
		t.Fatalf("resend: %s", r.body)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(s.recv.at("/dead")); n != 6 {
			return fmt.Errorf("%d arrivals", n)
		}
		return nil
	})
	got := s.recv.at("/dead")
	if a := got[5]; a.delivery != did || string(a.body) != string(failed[0].body) {
		t.Fatalf("the resend is delivery %s with body %s; want %s with %s", a.delivery, a.body, did, failed[0].body)
	}
	s.deliveries(id, "status=success", 30*time.Second, func(rows []any, total int) error {
		if total != 1 || rows[0].(map[string]any)["attempts"] != 6.0 {
			return fmt.Errorf("successful deliveries %v", rows)
		}
		return nil
	})
	r = call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did, "")
	want(t, r, 200, "")
	hist := r.data()["attempt_history"].([]any)
	if len(hist) != 6 || hist[5].(map[string]any)["trigger"] != "resend" || hist[5].(map[string]any)["status"] != "success" || hist[0].(map[string]any)["trigger"] != nil {
		t.Fatalf("attempt history %s", r.body)
	}

	// Bad resends get their 4xx.
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/del_aaaaaaaaaaaaaaaaaaaaaaaaaa/resend", ""), 404, "delivery_not_found")
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/nonsense/resend", ""), 404, "delivery_not_found")
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did+"/resend", "{}"), 400, "validation_error")
	r = call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", "")
	want(t, r, 200, "")
	testID := r.data()["delivery_id"].(string)
	testenv.Eventually(t, 20*time.Second, func() error {
		if r := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+testID, ""); r.status != 200 {
			return fmt.Errorf("test delivery not in the log yet: %d", r.status)
		}
		return nil
	})
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/"+testID+"/resend", ""), 422, "not_resendable")
	want(t, call(t, s.g, keyA, "PUT", "/v1/webhooks/endpoints/"+id, `{"active": false}`), 200, "")
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/deliveries/"+did+"/resend", ""), 409, "endpoint_inactive")
	// Another account's delivery id through its own endpoint: 404.
	other := create(t, s.g, keyB, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, s.recv.url+"/b"))["id"].(string)
	want(t, call(t, s.g, keyB, "POST", "/v1/webhooks/endpoints/"+other+"/deliveries/"+did+"/resend", ""), 404, "delivery_not_found")
}

// Recover re-sends exactly the failed deliveries of its window, oldest
// first: 1,000 failed (every retry tier passed) across two windows, and
// deliveries still waiting in a delay tier (a 429 with a long Retry-After)
// are left alone.
func TestRecoverTheFailedDeliveriesOfAWindow(t *testing.T) {
	s := startSystem(t)
	s.recv.answerWith("/flaky", func(_ *http.Request, body []byte) (int, http.Header) {
		if strings.Contains(string(body), `"later":true`) {
			return 429, http.Header{"Retry-After": {"3600"}}
		}
		return 500, nil
	})
	id, _ := s.endpoint("/flaky", "ocr.completed")
	start := time.Now().UTC().Truncate(time.Second)
	first := s.publish("ocr.completed", 0, 600, "")
	time.Sleep(1100 * time.Millisecond) // the windows are whole seconds apart: accepted_at has seconds
	split := time.Now().UTC().Truncate(time.Second)
	second := s.publish("ocr.completed", 600, 400, "")
	s.deliveries(id, "status=failed", 120*time.Second, totalIs(1000))
	// Published after the others failed: their hour-long wait sits at the
	// head of the last delay tier, which the test's 1 s schedule shares.
	s.publish("ocr.completed", 10000, 50, `,"later":true`)
	s.deliveries(id, "status=retrying", 30*time.Second, totalIs(50))
	before := len(s.recv.at("/flaky"))

	s.recv.answer("/flaky", 200)
	r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/recover", fmt.Sprintf(`{"since": %q, "until": %q}`, start.Format(time.RFC3339), split.Format(time.RFC3339)))
	want(t, r, 202, "")
	j := r.data()
	if j["type"] != "recover" || j["status"] != "queued" || !strings.HasSuffix(r.header.Get("Location"), "/jobs/"+j["id"].(string)) {
		t.Fatalf("recover: %s", r.body)
	}
	j = s.job(id, j["id"].(string), 90*time.Second)
	c := j["counts"].(map[string]any)
	if j["status"] != "completed" || c["sent"] != 600.0 || c["matched"] != 600.0 || c["skipped"] != 0.0 {
		t.Fatalf("first job: %v", j)
	}
	// Exactly the first window, oldest first (acceptance order).
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(s.recv.at("/flaky")) - before; n < 600 {
			return fmt.Errorf("%d resent", n)
		}
		return nil
	})
	got := s.recv.at("/flaky")[before:]
	if len(got) != 600 {
		t.Fatalf("%d arrivals after the recover, want 600", len(got))
	}
	for i, a := range got {
		if a.event != first[i] {
			t.Fatalf("arrival %d is event %s, want %s (oldest first, the window only)", i, a.event, first[i])
		}
	}
	s.deliveries(id, "status=failed", 30*time.Second, totalIs(400))

	// The second window: since alone means up to now.
	r = call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/recover", fmt.Sprintf(`{"since": %q}`, split.Format(time.RFC3339)))
	want(t, r, 202, "")
	if j := s.job(id, r.data()["id"].(string), 90*time.Second); j["counts"].(map[string]any)["sent"] != 400.0 {
		t.Fatalf("second job: %v", j)
	}
	s.deliveries(id, "status=failed", 30*time.Second, totalIs(0))
	s.deliveries(id, "status=success", 30*time.Second, totalIs(1000))
	s.deliveries(id, "status=retrying", 10*time.Second, totalIs(50)) // untouched
	seen := map[string]int{}
	for _, a := range s.recv.at("/flaky")[before:] {
		seen[a.event]++
	}
	for _, e := range append(first, second...) {
		if seen[e] != 1 {
			t.Fatalf("event %s arrived %d times after the recovers, want once", e, seen[e])
		}
	}
	// The jobs are listed newest first.
	r = call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/jobs", "")
	want(t, r, 200, "")
	if l := r.list(); len(l) != 2 || l[0].(map[string]any)["created_at"].(string) < l[1].(map[string]any)["created_at"].(string) {
		t.Fatalf("jobs %s", r.body)
	}
}

// Replay backfills an endpoint created after the events: its subscribed
// types, in event order, with the delivery ids a live delivery has; a
// second replay of other types at a bounded rate; a replay to an endpoint
// that had them numbers its attempts after the recorded ones.
func TestReplayBackfillsAnEndpointCreatedAfterTheEvents(t *testing.T) {
	s := startSystem(t)
	start := time.Now().UTC().Truncate(time.Second)
	signed := s.publish("document.signed", 0, 100, "")
	ocr := s.publish("ocr.completed", 0, 100, "")
	id, _ := s.endpoint("/new", "document.*")
	time.Sleep(500 * time.Millisecond) // not waiting for a result: nothing live may arrive, and this gives it the chance
	if n := len(s.recv.at("/new")); n != 0 {
		t.Fatalf("%d live deliveries of events published before the endpoint existed", n)
	}
	r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/replay", fmt.Sprintf(`{"since": %q}`, start.Format(time.RFC3339)))
	want(t, r, 202, "")
	j := s.job(id, r.data()["id"].(string), 60*time.Second)
	if c := j["counts"].(map[string]any); j["status"] != "completed" || c["sent"] != 100.0 || c["matched"] != 100.0 || c["scanned"].(float64) < 200 {
		t.Fatalf("replay: %v", j)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(s.recv.at("/new")); n < 100 {
			return fmt.Errorf("%d replayed", n)
		}
		return nil
	})
	got := s.recv.at("/new")
	for i, a := range got {
		if a.event != signed[i] || a.delivery != schemas.DeliveryID(signed[i], id) {
			t.Fatalf("replayed %d: event %s delivery %s, want %s %s (event order, live delivery ids)", i, a.event, a.delivery, signed[i], schemas.DeliveryID(signed[i], id))
		}
		var p schemas.Payload
		if err := json.Unmarshal(a.body, &p); err != nil || p.Type != "document.signed" || !strings.Contains(string(p.Data), fmt.Sprintf(`"n":%d`, i)) {
			t.Fatalf("replayed body %s", a.body)
		}
	}
	s.deliveries(id, "", 30*time.Second, totalIs(100))

	// Other types at 50/s; and the document events again: attempt 2.
	r = call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/replay", fmt.Sprintf(`{"since": %q, "event_types": ["ocr.completed", "document.signed"], "rate": 50}`, start.Format(time.RFC3339)))
	want(t, r, 202, "")
	if d := r.data(); d["rate"] != 50.0 || len(d["event_types"].([]any)) != 2 {
		t.Fatalf("replay: %s", r.body)
	}
	began := time.Now()
	j = s.job(id, r.data()["id"].(string), 60*time.Second)
	if c := j["counts"].(map[string]any); c["sent"] != 200.0 {
		t.Fatalf("second replay: %v", j)
	}
	t.Logf("200 events replayed at rate 50 in %s", time.Since(began).Round(100*time.Millisecond))
	s.deliveries(id, "", 30*time.Second, totalIs(200))
	r = call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+schemas.DeliveryID(signed[0], id), "")
	want(t, r, 200, "")
	if h := r.data()["attempt_history"].([]any); len(h) != 2 || h[1].(map[string]any)["trigger"] != "replay" {
		t.Fatalf("a re-played delivery: %s", r.body)
	}
	if r := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries/"+schemas.DeliveryID(ocr[0], id), ""); r.status != 200 {
		t.Fatalf("a backfilled ocr delivery: %s", r.body)
	}

	// Bad input: clear 4xx naming the field.
	bad := func(body string, status int, code, field string) {
		t.Helper()
		r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/replay", body)
		want(t, r, status, code)
		if field != "" && !strings.Contains(strings.Join(r.fields(), " "), field) {
			t.Fatalf("%s: fields %v, want %s", body, r.fields(), field)
		}
	}
	bad(`{}`, 400, "validation_error", "since")
	bad(`{"since": "yesterday"}`, 400, "validation_error", "since")
	bad(`{"since": "2026-11-30T00:00:00Z", "until": "2026-11-29T00:00:00Z"}`, 400, "validation_error", "until")
	bad(`{"since": "2099-01-01T00:00:00Z"}`, 400, "validation_error", "since")
	bad(`{"since": "2026-11-30T00:00:00Z", "event_types": ["nope"]}`, 400, "validation_error", "event_types[0]")
	bad(`{"since": "2026-11-30T00:00:00Z", "rate": 0}`, 400, "validation_error", "rate")
	bad(`{"since": "2026-11-30T00:00:00Z", "speed": 1}`, 400, "validation_error", "speed")
	bad(fmt.Sprintf(`{"since": %q}`, time.Now().Add(-40*24*time.Hour).UTC().Format(time.RFC3339)), 422, "outside_retention", "since")
	r = call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/recover", fmt.Sprintf(`{"since": %q}`, time.Now().Add(-40*24*time.Hour).UTC().Format(time.RFC3339)))
	want(t, r, 422, "outside_retention")
	if !strings.Contains(string(r.body), "720h") {
		t.Fatalf("the message does not name the retention: %s", r.body)
	}
	want(t, call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/jobs/job_aaaaaaaaaaaaaaaaaaaa", ""), 404, "job_not_found")
	// Another account cannot see the job through an endpoint of its own.
	other := create(t, s.g, keyB, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, s.recv.url+"/b"))["id"].(string)
	a := call(t, s.g, keyB, "GET", "/v1/webhooks/endpoints/"+other+"/jobs/"+j["id"].(string), "")
	n := call(t, s.g, keyB, "GET", "/v1/webhooks/endpoints/"+other+"/jobs/job_aaaaaaaaaaaaaaaaaaaa", "")
	want(t, a, 404, "job_not_found")
	if strings.ReplaceAll(string(a.body), j["id"].(string), "X") != strings.ReplaceAll(string(n.body), "job_aaaaaaaaaaaaaaaaaaaa", "X") {
		t.Fatalf("another account's job answers %s, a missing one %s", a.body, n.body)
	}
}

// A job is cancelled at its next checkpoint; a finished one cannot be.
func TestCancelAJob(t *testing.T) {
	s := startSystem(t)
	start := time.Now().UTC().Truncate(time.Second)
	s.publish("face.verified", 0, 2000, "")
	id, _ := s.endpoint("/slow", "face.verified")
	r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/replay", fmt.Sprintf(`{"since": %q, "rate": 20}`, start.Format(time.RFC3339)))
	want(t, r, 202, "")
	jid := r.data()["id"].(string)
	testenv.Eventually(t, 30*time.Second, func() error {
		if j := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/jobs/"+jid, "").data(); j["status"] != "running" {
			return fmt.Errorf("job %v", j["status"])
		}
		return nil
	})
	r = call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/jobs/"+jid+"/cancel", "")
	want(t, r, 202, "")
	if r.data()["cancel_requested"] != true {
		t.Fatalf("cancel: %s", r.body)
	}
	j := s.job(id, jid, 30*time.Second)
	if sent := j["counts"].(map[string]any)["sent"].(float64); j["status"] != "cancelled" || sent >= 2000 {
		t.Fatalf("cancelled job: %v", j)
	}
	want(t, call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/jobs/"+jid+"/cancel", ""), 409, "job_finished")
}

// A 410 Gone disables the endpoint at once (that delivery is final: no
// retry) and tells the account: webhook.endpoint.disabled reaches its
// endpoint that subscribes to it. Re-enabling clears the reason.
func TestGoneDisablesTheEndpointAndTellsTheAccount(t *testing.T) {
	s := startSystem(t)
	s.recv.answer("/gone", http.StatusGone)
	watch, _ := s.endpoint("/watch", "webhook.endpoint.disabled")
	gone, _ := s.endpoint("/gone", "ocr.completed")
	s.publish("ocr.completed", 0, 3, "")
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(s.recv.at("/watch")); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	note := s.recv.at("/watch")[0]
	var p struct {
		Type string
		Data struct{ EndpointID, Reason, URL string }
	}
	json.Unmarshal(note.body, &p) //nolint:errcheck
	var data map[string]any
	json.Unmarshal(note.body, &data) //nolint:errcheck
	d := data["data"].(map[string]any)
	if p.Type != schemas.EventEndpointDisabled || d["endpoint_id"] != gone || d["reason"] != "gone" || d["url"] != s.recv.url+"/gone" || note.header.Get("X-Zaits-Event") != schemas.EventEndpointDisabled {
		t.Fatalf("notification %s", note.body)
	}
	r := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+gone, "")
	want(t, r, 200, "")
	if e := r.data(); e["active"] != false || e["disabled_reason"] != "gone" || e["disabled_at"] == nil {
		t.Fatalf("disabled endpoint: %s", r.body)
	}
	if n := len(s.recv.at("/gone")); n != 1 {
		t.Fatalf("%d requests to the gone endpoint, want 1: a 410 is final and disables", n)
	}
	// The 410 delivery failed after one attempt and is a dead letter; the
	// later two were not sent (endpoint inactive).
	s.deliveries(gone, "status=failed", 30*time.Second, func(rows []any, total int) error {
		if total != 3 {
			return fmt.Errorf("%d failed deliveries", total)
		}
		for _, row := range rows {
			if row.(map[string]any)["attempts"] != 1.0 {
				return fmt.Errorf("delivery %v", row)
			}
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		if l := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+gone+"/dead-letters", "").list(); len(l) != 1 {
			return fmt.Errorf("%d dead letters", len(l))
		}
		return nil
	})
	if v := metric(t, s.dreg, `zaits_endpoints_disabled_total{reason="gone"}`); v != 1 {
		t.Fatalf("zaits_endpoints_disabled_total{reason=gone} = %v", v)
	}
	r = call(t, s.g, keyA, "PUT", "/v1/webhooks/endpoints/"+gone, `{"active": true}`)
	want(t, r, 200, "")
	if e := r.data(); e["active"] != true || e["disabled_reason"] != nil || e["disabled_at"] != nil {
		t.Fatalf("re-enabled: %s", r.body)
	}
	_ = watch
}
