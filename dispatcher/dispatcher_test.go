package dispatcher_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

func TestOrderPerEndpointFor10000EventsOver100Endpoints(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	var eps []*endpoint.Entry
	for i := range 100 {
		eps = append(eps, recv.add(t, store, fmt.Sprintf("ep%03d", i), "", nil))
	}
	attempts := followAttempts(t, kc)
	reg := prometheus.NewRegistry()
	startDispatcherWith(t, testConfig(kc), reg)
	newProducer(t, kc).send(t, interleaved(100, eps)...)
	eventually(t, 90*time.Second, func() error {
		if n := recv.total.Load(); n < 10000 {
			return fmt.Errorf("%d of 10000 delivered", n)
		}
		if n := attempts.len(); n < 10000 {
			return fmt.Errorf("%d of 10000 attempt records", n)
		}
		return nil
	})
	for i, e := range eps {
		got := recv.ledger(fmt.Sprintf("ep%03d", i))
		if len(got) != 100 {
			t.Fatalf("endpoint %d got %d deliveries, want 100", i, len(got))
		}
		for j, a := range got {
			if a.seq != j {
				t.Fatalf("endpoint %d: delivery %d carries seq %d: out of order", i, j, a.seq)
			}
		}
		for _, a := range attempts.forEndpoint(e.ID) {
			if a.Outcome != schemas.OutcomeSuccess || a.HTTPStatus != 200 || a.Attempt != 1 || a.EventCreated == 0 || a.AccountID != "acct_test" || a.DeliveryID == "" {
				t.Fatalf("attempt record %+v", a)
			}
		}
	}
	f := func(name string, labels map[string]string, want float64) {
		t.Helper()
		if got := metricValue(t, reg, name, labels); got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	f("zaits_dispatcher_attempts_total", map[string]string{"outcome": "success"}, 10000)
	f("zaits_dispatcher_attempts_total", map[string]string{"outcome": "retrying"}, 0)
	f("zaits_dispatcher_delivery_latency_seconds", nil, 10000)
	f("zaits_delivery_requests_total", map[string]string{"result": "ok"}, 10000)
	f("zaits_dispatcher_in_flight", nil, 0)
	// Lag is measured from the committed offsets every few seconds.
	eventually(t, 15*time.Second, func() error {
		if v, n := metricSamples(t, reg, "zaits_dispatcher_consumer_lag", map[string]string{"topic": "deliveries"}); n != 1 || v != 0 {
			return fmt.Errorf("deliveries lag %v (%d samples)", v, n)
		}
		for _, tier := range schemas.RetryTopics {
			if v, n := metricSamples(t, reg, "zaits_dispatcher_retry_backlog", map[string]string{"tier": tier}); n != 1 || v != 0 {
				return fmt.Errorf("%s backlog %v (%d samples)", tier, v, n)
			}
		}
		return nil
	})
}

func p99(as []arrival) time.Duration {
	var ds []time.Duration
	for _, a := range as {
		ds = append(ds, a.at.Sub(a.acceptedAt))
	}
	slices.Sort(ds)
	return ds[len(ds)*99/100]
}

func TestHangingEndpointDoesNotSlowOthers(t *testing.T) {
	run := func(withHanging bool) time.Duration {
		kc := testenv.Kafka(t)
		store := startStore(t, kc)
		recv := startReceiver(t)
		release := make(chan struct{})
		defer close(release)
		var eps []*endpoint.Entry
		for i := range 20 {
			eps = append(eps, recv.add(t, store, fmt.Sprintf("ok%02d", i), "", nil))
		}
		hang := recv.add(t, store, "hang", "", func(_ int, ctx *fasthttp.RequestCtx) {
			select { // never answers within the delivery timeout
			case <-release:
			case <-time.After(5 * time.Second):
			}
		})
		startDispatcher(t, testConfig(kc))
		p := newProducer(t, kc)
		// Warm up (group joined, connections open), then measure.
		warmUp(t, p, recv, eps)
		// 40 rounds, 25 ms apart: every round one event per endpoint (and 5 for the hanging one).
		for round := range 40 {
			var ts []schemas.Task
			for _, e := range eps {
				ts = append(ts, task(e, round))
			}
			if withHanging {
				for k := range 5 {
					ts = append(ts, task(hang, round*5+k))
				}
			}
			p.send(t, ts...)
			time.Sleep(25 * time.Millisecond) // pacing the load, not waiting for a result
		}
		eventually(t, 30*time.Second, func() error {
			for i := range eps {
				if n := len(recv.ledger(fmt.Sprintf("ok%02d", i))); n < 41 {
					return fmt.Errorf("ok%02d: %d of 41", i, n)
				}
			}
			return nil
		})
		var all []arrival
		for i := range eps {
			for _, a := range recv.ledger(fmt.Sprintf("ok%02d", i)) {
				if a.seq != warmupSeq {
					all = append(all, a)
				}
			}
		}
		if withHanging && len(recv.ledger("hang")) == 0 {
			t.Fatal("the hanging endpoint was never called")
		}
		return p99(all)
	}
	base := run(false)
	with := run(true)
	t.Logf("p99 accepted→receipt of 20 healthy endpoints: %s alone, %s next to a hanging endpoint", base, with)
	if with > 3*base+100*time.Millisecond {
		t.Fatalf("a hanging endpoint slowed the others: p99 %s vs %s without it", with, base)
	}
}

// gaps returns the time between consecutive arrivals.
func gaps(as []arrival) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(as); i++ {
		out = append(out, as[i].at.Sub(as[i-1].at))
	}
	return out
}

func TestRetriesFollowTheScheduleAndEndInDead(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	failing := recv.add(t, store, "failing", "", status(500))
	recovering := recv.add(t, store, "recovering", "", func(n int, ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(map[bool]int{true: 502, false: 200}[n == 0])
	})
	busy := recv.add(t, store, "busy", "", func(n int, ctx *fasthttp.RequestCtx) {
		if n == 0 {
			ctx.Response.Header.Set("Retry-After", "2")
			ctx.SetStatusCode(429)
			return
		}
		ctx.SetStatusCode(200)
	})
	attempts := followAttempts(t, kc)
	dead := followTopic(t, kc, schemas.TopicDead, func(m kafka.Message, l *attemptsLog) {
		tk, err := schemas.ParseTask(m)
		if err != nil {
			t.Errorf("dead message: %v", err)
		}
		l.all = append(l.all, schemas.Attempt{EndpointID: tk.EndpointID, Attempt: tk.Attempt, DeliveryID: tk.DeliveryID})
	})
	startDispatcher(t, testConfig(kc))
	ft := task(failing, 0)
	newProducer(t, kc).send(t, ft, task(recovering, 0), task(busy, 0))
	eventually(t, 30*time.Second, func() error {
		if n := len(dead.forEndpoint(failing.ID)); n != 1 {
			return fmt.Errorf("%d dead tasks: %w", n, errNotYet)
		}
		if n := len(attempts.forEndpoint(failing.ID)); n < 5 {
			return fmt.Errorf("%d attempt records: %w", n, errNotYet)
		}
		return nil
	})
	got := recv.ledger("failing")
	if len(got) != 5 {
		t.Fatalf("failing endpoint got %d attempts, want 5", len(got))
	}
	for i, g := range gaps(got) {
		if g < testSchedule[i] || g > testSchedule[i]+time.Second {
			t.Errorf("gap after attempt %d is %s, want %s (+ at most 1s)", i+1, g, testSchedule[i])
		}
	}
	recs := attempts.forEndpoint(failing.ID)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Attempt < recs[j].Attempt })
	for i, a := range recs {
		want := schemas.OutcomeRetrying
		if i == 4 {
			want = schemas.OutcomeFailed
		}
		if a.Attempt != i+1 || a.Outcome != want || a.HTTPStatus != 500 || a.ErrorCode != schemas.ErrCodeHTTPStatus || a.DeliveryID != ft.DeliveryID {
			t.Errorf("record %d: %+v", i, a)
		}
		if (a.NextRetryAt != nil) != (i < 4) || (a.NextRetryAt != nil && a.NextRetryAt.Sub(a.AttemptedAt) < testSchedule[i]) {
			t.Errorf("record %d next retry %v after %v", i, a.NextRetryAt, a.AttemptedAt)
		}
	}
	if d := dead.forEndpoint(failing.ID)[0]; d.Attempt != 5 || d.DeliveryID != ft.DeliveryID {
		t.Errorf("dead task %+v", d)
	}

	rec := recv.ledger("recovering")
	if len(rec) != 2 || rec[1].at.Sub(rec[0].at) < testSchedule[0] {
		t.Fatalf("recovering endpoint: %d arrivals, gaps %v", len(rec), gaps(rec))
	}
	eventually(t, 5*time.Second, func() error {
		if rs := attempts.forEndpoint(recovering.ID); len(rs) != 2 || rs[1].Outcome != schemas.OutcomeSuccess || rs[1].Attempt != 2 {
			return fmt.Errorf("recovering endpoint's records %+v", rs)
		}
		return nil
	})
	b := recv.ledger("busy")
	if len(b) != 2 || b[1].at.Sub(b[0].at) < 2*time.Second {
		t.Fatalf("Retry-After 2 not honoured: %d arrivals, gaps %v", len(b), gaps(b))
	}
	if len(dead.forEndpoint(recovering.ID))+len(dead.forEndpoint(busy.ID)) != 0 {
		t.Fatal("a recovered task went to dead")
	}
}

func TestStrictOrderingHoldsBackOnlyItsEndpoint(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	failTwice := func(n int, ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(map[bool]int{true: 503, false: 200}[n < 2])
	}
	strict := recv.add(t, store, "strict", schemas.OrderingStrict, failTwice)
	loose := recv.add(t, store, "loose", schemas.OrderingDefault, failTwice)
	other := recv.add(t, store, "other", "", nil)
	startDispatcher(t, testConfig(kc))
	var ts []schemas.Task
	for seq := range 5 {
		ts = append(ts, task(strict, seq), task(loose, seq), task(other, seq))
	}
	newProducer(t, kc).send(t, ts...)
	eventually(t, 30*time.Second, func() error {
		if n, m := len(recv.ledger("strict")), len(recv.ledger("loose")); n < 7 || m < 7 {
			return fmt.Errorf("strict %d, loose %d of 7 arrivals", n, m)
		}
		return nil
	})
	seqs := func(name string) string {
		var s []string
		for _, a := range recv.ledger(name) {
			s = append(s, fmt.Sprint(a.seq))
		}
		return strings.Join(s, ",")
	}
	if got := seqs("strict"); got != "0,0,0,1,2,3,4" {
		t.Errorf("strict endpoint got %s, want 0,0,0,1,2,3,4", got)
	}
	if got := seqs("loose"); !strings.HasPrefix(got, "0,1,") {
		t.Errorf("default endpoint got %s: its later tasks should not wait behind a retry", got)
	}
	o := recv.ledger("other")
	s := recv.ledger("strict")
	if got := seqs("other"); got != "0,1,2,3,4" || o[4].at.After(s[1].at) {
		t.Errorf("other endpoint got %s, last at %v, strict's first retry at %v: it waited", got, o[len(o)-1].at, s[1].at)
	}
}

func TestDeletedAndInactiveEndpointsAreNotSentButRecorded(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	deleted := recv.add(t, store, "deleted", "", nil)
	inactive := recv.add(t, store, "inactive", "", nil)
	live := recv.add(t, store, "live", "", nil)
	attempts := followAttempts(t, kc)
	// The changes are acknowledged before the dispatcher starts, and it is
	// ready only once its endpoint view reached the topic's end as of its
	// start, so its view has them when the tasks arrive. (A change made while
	// it runs reaches its view a poll later; a task attempted in between is
	// sent — CI caught this test racing that way.)
	ctx := t.Context()
	if err := store.Delete(ctx, "acct_test", deleted.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, "acct_test", inactive.ID, 0, func(e *schemas.Endpoint) error { e.Active = false; return nil }); err != nil {
		t.Fatal(err)
	}
	d := startDispatcher(t, testConfig(kc))
	// Ready once the endpoint store caught up and the group was joined.
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + d.OpsAddr() + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d %s", resp.StatusCode, body)
		}
		return nil
	})
	newProducer(t, kc).send(t, task(deleted, 0), task(inactive, 0), task(live, 0))
	f := func(e *endpoint.Entry, code string) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			rs := attempts.forEndpoint(e.ID)
			if len(rs) != 1 {
				return fmt.Errorf("%d records for %s", len(rs), e.ID)
			}
			if rs[0].ErrorCode != code || (code != "") != (rs[0].Outcome == schemas.OutcomeFailed && rs[0].Error != "") {
				return fmt.Errorf("record %+v, want %s", rs[0], code)
			}
			return nil
		})
	}
	f(deleted, schemas.ErrCodeEndpointDeleted)
	f(inactive, schemas.ErrCodeEndpointInactive)
	f(live, "")
	if n, m := len(recv.ledger("deleted")), len(recv.ledger("inactive")); n+m != 0 {
		t.Fatalf("sent to a deleted (%d) or inactive (%d) endpoint", n, m)
	}
}

func TestAddressGuardRefusalIsRecorded(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	attempts := followAttempts(t, kc)
	cfg := testConfig(kc)
	cfg.Delivery = &dispatcher.ClientConfig{} // no allow-list: loopback is refused too
	startDispatcher(t, cfg)
	var eps []*endpoint.Entry
	for _, u := range []string{"http://127.0.0.1:9/x", "http://10.0.0.1:9/x", "http://169.254.169.254/latest", "http://[::1]:9/x", "http://[::ffff:127.0.0.1]:9/x"} {
		e, _, err := store.Create(t.Context(), schemas.Endpoint{AccountID: "acct_test", URL: u, Events: []string{"document.*"}, Active: true})
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, e)
	}
	var ts []schemas.Task
	for _, e := range eps {
		ts = append(ts, task(e, 0))
	}
	newProducer(t, kc).send(t, ts...)
	for _, e := range eps {
		eventually(t, 15*time.Second, func() error {
			rs := attempts.forEndpoint(e.ID)
			if len(rs) == 0 {
				return fmt.Errorf("no record for %s", e.URL)
			}
			if rs[0].ErrorCode != schemas.ErrCodeAddressRefused || !strings.Contains(rs[0].Error, "refused") || rs[0].HTTPStatus != 0 {
				return fmt.Errorf("%s: record %+v", e.URL, rs[0])
			}
			return nil
		})
	}
}

// TestAttemptActsOnTheEndpointViewItsTaskWasRoutedWith: a task made right
// after an endpoint was reactivated or deactivated, carrying the position of
// <p>.endpoints the router's view had (here the writer's own, which covers
// the change), is attempted by that change even though the dispatcher's own
// view follows the topic apart, with two busy loops beside the test.
func TestAttemptActsOnTheEndpointViewItsTaskWasRoutedWith(t *testing.T) {
	testenv.CPULoad(t, 2)
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	ctx := t.Context()
	const n = 40
	eps := make([]*endpoint.Entry, n)
	for i := range eps {
		eps[i] = recv.add(t, store, fmt.Sprintf("ep%d", i), "", nil)
		if i%2 == 1 { // reactivated below
			if _, err := store.Update(ctx, "acct_test", eps[i].ID, 0, func(e *schemas.Endpoint) error { e.Active = false; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	attempts := followAttempts(t, kc)
	d := startDispatcher(t, testConfig(kc))
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + d.OpsAddr() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	p := newProducer(t, kc)
	for i, e := range eps {
		active := i%2 == 1
		if _, err := store.Update(ctx, "acct_test", e.ID, 0, func(x *schemas.Endpoint) error { x.Active = active; return nil }); err != nil {
			t.Fatal(err)
		}
		tk := task(e, 0)
		tk.EndpointsAt = store.Applied()
		p.send(t, tk)
	}
	eventually(t, 30*time.Second, func() error {
		for _, e := range eps {
			if len(attempts.forEndpoint(e.ID)) == 0 {
				return fmt.Errorf("no attempt record for %s yet", e.ID)
			}
		}
		return nil
	})
	var missed []string
	for i, e := range eps {
		rs := attempts.forEndpoint(e.ID)
		sent := len(recv.ledger(fmt.Sprintf("ep%d", i)))
		switch {
		case i%2 == 0 && (rs[0].ErrorCode != schemas.ErrCodeEndpointInactive || sent != 0):
			missed = append(missed, fmt.Sprintf("deactivated %s: record %s/%s, %d sent", e.ID, rs[0].Outcome, rs[0].ErrorCode, sent))
		case i%2 == 1 && rs[0].Outcome != schemas.OutcomeSuccess:
			missed = append(missed, fmt.Sprintf("reactivated %s: record %s/%s", e.ID, rs[0].Outcome, rs[0].ErrorCode))
		}
	}
	t.Logf("%d of %d attempts missed", len(missed), n)
	if len(missed) > 0 {
		t.Errorf("%d of %d attempts did not act on the change made before their task:\n  %s", len(missed), n, strings.Join(missed, "\n  "))
	}
}

// TestAViewThatCannotReachItsTaskPositionIsWaitedForOnce: tasks whose
// position the dispatcher's view cannot reach (here: beyond the end of
// <p>.endpoints, as when it is unreadable) are attempted with the view as it
// is after one bounded wait, not one wait per task, and are counted.
func TestAViewThatCannotReachItsTaskPositionIsWaitedForOnce(t *testing.T) {
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	e := recv.add(t, store, "ep", "", nil)
	reg := prometheus.NewRegistry()
	startDispatcherWith(t, testConfig(kc), reg)
	p := newProducer(t, kc)
	warmUp(t, p, recv, []*endpoint.Entry{e})
	const n = 10
	beyond := store.Applied()
	beyond[0] += 1000
	start := time.Now()
	for i := range n {
		tk := task(e, i)
		tk.EndpointsAt = beyond
		p.send(t, tk)
	}
	eventually(t, 30*time.Second, func() error {
		if got := len(recv.ledger("ep")); got < n+1 {
			return fmt.Errorf("%d of %d delivered", got-1, n)
		}
		return nil
	})
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("%d tasks with an unreachable position took %s: waited per task", n, took)
	}
	if v := metricValue(t, reg, "zaits_dispatcher_stale_lookups_total", nil); v != n {
		t.Errorf("zaits_dispatcher_stale_lookups_total = %v, want %d", v, n)
	}
}
