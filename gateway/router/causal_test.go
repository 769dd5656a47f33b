package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Causal routing: an event accepted after a management write was answered
// is routed by that write, whichever gateway answered it, whichever way the
// event came in, and while the machine is busy (two busy loops beside the
// test: without the router's wait, 3 to 8 of 40 events right after a 201
// missed their new endpoint).

// causalSteps is the number of write-then-publish steps per scenario.
const causalSteps = 40

// api is one account's management API on one gateway.
type api struct {
	t       testing.TB
	addr    string // the gateway's API address
	key     string // the account's API key
	account string
}

func (e *env) api(g *gateway.Gateway, account string) api {
	return api{t: e.t, addr: g.Addr(), key: e.keys[account], account: account}
}

// do sends a management request and fails the test unless it answers want.
func (a api) do(method, path, body string, want int) []byte {
	a.t.Helper()
	req, err := http.NewRequest(method, "http://"+a.addr+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return b
}

// create makes an endpoint subscribed to events (201) and returns its id.
func (a api) create(events ...string) string {
	a.t.Helper()
	ev, _ := json.Marshal(events)
	b := a.do("POST", "/v1/webhooks/endpoints", fmt.Sprintf(`{"url":"https://example.com/hook","events":%s}`, ev), http.StatusCreated)
	var v struct{ Data struct{ ID string } }
	if err := json.Unmarshal(b, &v); err != nil || v.Data.ID == "" {
		a.t.Fatalf("create answer %s: %v", b, err)
	}
	return v.Data.ID
}

func (a api) put(id, body string) {
	a.t.Helper()
	a.do("PUT", "/v1/webhooks/endpoints/"+id, body, http.StatusOK)
}
func (a api) delete(id string) {
	a.t.Helper()
	a.do("DELETE", "/v1/webhooks/endpoints/"+id, "", http.StatusOK)
}

// publish posts a document.signed event of the account (202) and returns its id.
func (a api) publish(i int) string {
	a.t.Helper()
	return testenv.Accept(a.t, a.addr, a.key, fmt.Sprintf(`{"type":"document.signed","data":{"step":%d}}`, i))
}

// check is one expectation: event routed to endpoint (want) or not.
type check struct {
	event, endpoint string
	want            bool
}

// known waits until the router's view has every endpoint of ids: the
// starting state of a scenario, before the racing steps.
func known(t testing.TB, r *Router, ids ...string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, id := range ids {
			if _, ok := r.store.Get(id); !ok {
				return fmt.Errorf("router does not know endpoint %s yet", id)
			}
		}
		return nil
	})
}

// verify publishes a last event through a (same account, so same partition,
// routed after every earlier one) and, once its task to anchor is on
// <p>.deliveries, holds every check; misses are reported together.
func (e *env) verify(a api, anchor string, checks []check) {
	e.t.Helper()
	last := a.publish(-1)
	var have map[string]bool
	testenv.Eventually(e.t, 30*time.Second, func() error {
		have = map[string]bool{}
		for _, p := range pairs(testenv.Tasks(e.t, e.kc)) {
			have[p] = true
		}
		if !have[last+"→"+anchor] {
			return fmt.Errorf("the last event %s is not routed yet", last)
		}
		return nil
	})
	var missed []string
	for _, c := range checks {
		if have[c.event+"→"+c.endpoint] != c.want {
			verb := "not routed to"
			if !c.want {
				verb = "routed to"
			}
			missed = append(missed, fmt.Sprintf("%s %s %s", c.event, verb, c.endpoint))
		}
	}
	e.t.Logf("%d of %d checks missed", len(missed), len(checks))
	if len(missed) > 0 {
		e.t.Errorf("%d of %d events published after a write's answer were not routed by it:\n  %s", len(missed), len(checks), strings.Join(missed, "\n  "))
	}
}

func TestEventAfterCreateIsRoutedToTheNewEndpoint(t *testing.T) {
	const acct = "acct_c"
	testenv.CPULoad(t, 2)
	e := newEnv(t, []string{acct})
	r := e.router()
	a := e.api(e.g, acct)
	anchor := a.create("*")
	known(t, r, anchor)
	var checks []check
	for i := range causalSteps {
		id := a.create("document.signed") // 201: the write is answered
		checks = append(checks, check{a.publish(i), id, true})
	}
	e.verify(a, anchor, checks)
}

func TestEventAfterSubscriptionChangeIsRoutedByIt(t *testing.T) {
	const acct = "acct_s"
	testenv.CPULoad(t, 2)
	e := newEnv(t, []string{acct})
	r := e.router()
	a := e.api(e.g, acct)
	anchor := a.create("*")
	ids := make([]string, causalSteps)
	for i := range ids {
		ids[i] = a.create("face.verified")
	}
	known(t, r, append(ids, anchor)...)
	var checks []check
	for i, id := range ids {
		a.put(id, `{"events":["face.verified","document.signed"]}`) // 200
		checks = append(checks, check{a.publish(i), id, true})
	}
	e.verify(a, anchor, checks)
}

func TestEventAfterDeactivationOrDeleteIsNotRoutedToIt(t *testing.T) {
	const acct = "acct_d"
	testenv.CPULoad(t, 2)
	e := newEnv(t, []string{acct})
	r := e.router()
	a := e.api(e.g, acct)
	anchor := a.create("*")
	ids := make([]string, causalSteps)
	for i := range ids {
		ids[i] = a.create("document.signed")
	}
	known(t, r, append(ids, anchor)...)
	var checks []check
	for i, id := range ids {
		if i%2 == 0 {
			a.put(id, `{"active":false}`) // 200
		} else {
			a.delete(id) // 200
		}
		checks = append(checks, check{a.publish(i), id, false})
	}
	e.verify(a, anchor, checks)
}

// TestCausalRoutingAcrossTwoGateways: the write is answered by gateway A,
// the event accepted by gateway B, and the router is a third party with its
// own view; none of them shares an endpoint store.
func TestCausalRoutingAcrossTwoGateways(t *testing.T) {
	const acct = "acct_x"
	testenv.CPULoad(t, 2)
	e := newEnv(t, []string{acct})
	r := e.router()
	a, b := e.api(e.g, acct), e.api(e.gateway(), acct)
	anchor := a.create("*")
	known(t, r, anchor)
	var checks []check
	var ids []string
	for i := range causalSteps / 2 {
		id := a.create("document.signed")
		ids = append(ids, id)
		checks = append(checks, check{b.publish(i), id, true})
	}
	for i, id := range ids {
		if i%2 == 0 {
			a.put(id, `{"active":false}`)
		} else {
			a.delete(id)
		}
		checks = append(checks, check{b.publish(causalSteps/2 + i), id, false})
	}
	e.verify(b, anchor, checks)
}

// TestKafkaEventAfterAWriteIsRoutedByIt: events written straight to
// <p>.events after the write's answer, by a Go producer (fast enough to
// race) and by kcat.
func TestKafkaEventAfterAWriteIsRoutedByIt(t *testing.T) {
	const acct = "acct_k"
	testenv.CPULoad(t, 2)
	e := newEnv(t, []string{acct})
	r := e.router()
	a := e.api(e.g, acct)
	anchor := a.create("*")
	known(t, r, anchor)
	w := e.kc.NewWriter(e.kc.Topic(schemas.TopicEvents), time.Millisecond)
	defer w.Close()
	event := func(id string) string {
		return fmt.Sprintf(`{"id":"%s","type":"document.signed","account_id":"%s","data":{}}`, id, acct)
	}
	var checks []check
	var ids []string
	for i := range causalSteps {
		id := a.create("document.signed")
		ids = append(ids, id)
		ev := fmt.Sprintf("kw_%d", i)
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(acct), Value: []byte(event(ev))}); err != nil {
			t.Fatal(err)
		}
		checks = append(checks, check{ev, id, true})
	}
	for i, id := range ids[:10] {
		a.put(id, `{"active":false}`)
		ev := fmt.Sprintf("kc_%d", i)
		testenv.Kcat(t, e.kc, e.kc.Topic(schemas.TopicEvents), acct+"|"+event(ev))
		checks = append(checks, check{ev, id, false})
	}
	e.verify(a, anchor, checks)
}

// TestUnreadableEndpointsTopicBoundsTheWait: with <p>.endpoints gone (the
// events still flowing), each batch waits -router.endpoints-wait for a view
// it cannot confirm, then is routed with the view the router has, counted
// in zaits_router_stale_routes_total and logged: no loss, no endless stall.
func TestUnreadableEndpointsTopicBoundsTheWait(t *testing.T) {
	const acct = "acct_u"
	const wait = time.Second
	e := newEnv(t, []string{acct}, func(c *Config) { c.EndpointsWait = wait })
	var logs testenv.LogBuffer
	r, err := New(e.cfg, slog.New(slog.NewTextHandler(&logs, nil)), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	a := e.api(e.g, acct)
	id := a.create("document.signed")
	known(t, r, id)
	fresh := a.publish(0)
	waitTasks(t, e.kc, []string{fresh + "→" + id})

	topic := e.kc.Topic(schemas.TopicEndpoints)
	resp, err := e.kc.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || resp.Errors[topic] != nil {
		t.Fatalf("deleting %s: %v %v", topic, err, resp)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if pos, err := r.store.Latest(lctx); err == nil {
			return fmt.Errorf("%s still answers its end offsets %s", topic, pos)
		}
		return nil
	})

	want := []string{fresh + "→" + id}
	for i := 1; i <= 2; i++ {
		start := time.Now()
		ev := a.publish(i)
		want = append(want, ev+"→"+id)
		waitTasks(t, e.kc, want)
		took := time.Since(start)
		if took < wait || took > wait+5*time.Second {
			t.Errorf("event %d routed %s after its 202; want the bounded wait of %s and then at once", i, took, wait)
		}
		testenv.Eventually(t, 5*time.Second, func() error {
			if m := testenv.Scrape(t, r.OpsAddr()); !strings.Contains(m, fmt.Sprintf("zaits_router_stale_routes_total %d\n", i)) {
				return fmt.Errorf("zaits_router_stale_routes_total is not %d", i)
			}
			return nil
		})
	}
	var stale []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "routed events with an endpoint view that may be stale") {
			stale = append(stale, l)
		}
	}
	if len(stale) != 2 || !strings.Contains(stale[0], "level=ERROR") || !strings.Contains(stale[0], topic) {
		t.Errorf("want two error lines naming %s, got:\n%s", topic, logs.String())
	} else {
		t.Log(stale[0])
	}
}

// A batch that waited behind earlier batches' writes for longer than
// -router.endpoints-wait (a backlog) is not routed as stale when its end
// offsets are known and the view has reached them. The wait used to count
// from the fetch, and a deadline already passed could win the select over
// a lookup that had answered: in a 1,000,000-task backlog bench every
// fetch after the first was logged stale.
func TestABacklogBatchIsNotStale(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.EndpointsWait = 200 * time.Millisecond })
	e.endpoint("acct_b", true, "*")
	r := e.router()
	for i := range 20 {
		b := fetched{fetchedAt: time.Now().Add(-time.Minute), end: r.store.ReadEnd()}
		<-b.end.Done()
		if _, err := r.awaitView(context.Background(), &b); err != nil {
			t.Fatalf("batch %d fetched a minute ago, end offsets known and reached: %v", i, err)
		}
	}
}
