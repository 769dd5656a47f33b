package router

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

func TestRouterFansOutHTTPAndKafkaEventsToExactlyTheSubscribedEndpoints(t *testing.T) {
	const a, b = "acct_a", "acct_b"
	e := newEnv(t, []string{a, b})
	ctx := context.Background()

	signed := e.endpoint(a, true, "document.signed")
	docs := e.endpoint(a, true, "document.*")
	all := e.endpoint(a, true, "*")
	e.endpoint(a, false, "*")                    // inactive
	face := e.endpoint(a, true, "face.verified") // not subscribed to document.*
	deleted := e.endpoint(a, true, "*")
	if err := e.store.Delete(ctx, a, deleted, 0); err != nil {
		t.Fatal(err)
	}
	changed := e.endpoint(a, true, "ocr.completed")
	if _, err := e.store.Update(ctx, a, changed, 0, func(ep *schemas.Endpoint) error { ep.Events = []string{"document.signed"}; return nil }); err != nil {
		t.Fatal(err)
	}
	paused := e.endpoint(a, true, "*")
	if _, err := e.store.Update(ctx, a, paused, 0, func(ep *schemas.Endpoint) error { ep.Active = false; return nil }); err != nil {
		t.Fatal(err)
	}
	otherAccount := e.endpoint(b, true, "*")
	r := e.router() // after the endpoint changes: its view starts with all of them

	// Over HTTP: a service token for account a, the API key of b for its own account.
	e1 := e.accept(e.service, `{"type":"document.signed","account_id":"acct_a","data":{"n":1}}`)
	e2 := e.accept(e.service, `{"id":"ord_2","type":"face.verified","account_id":"acct_a","created":1700000000,"data":{"n":2}}`)
	e3 := e.accept(e.keys[b], `{"type":"document.signed","data":{"n":3}}`)
	if e2 != "ord_2" {
		t.Fatalf("the producer's id was not kept: %s", e2)
	}

	// Straight to Kafka with kcat, including three bad messages in between.
	testenv.Kcat(t, e.kc, e.kc.Topic(schemas.TopicEvents),
		`acct_a|this is not json`,
		`acct_a|{"id":"k_bad","type":"document.nope","account_id":"acct_a","data":{}}`,
		`acct_x|{"id":"k_key","type":"document.signed","account_id":"acct_a","data":{}}`,
		`acct_a|{"id":"k_4","type":"document.completed","account_id":"acct_a","created":1700000004,"data":{"n":4}}`,
		`acct_b|{"type":"face.verified","account_id":"acct_b","data":{"n":5}}`,
	)
	want := []string{
		e1 + "→" + signed, e1 + "→" + docs, e1 + "→" + all, e1 + "→" + changed,
		e2 + "→" + all, e2 + "→" + face,
		e3 + "→" + otherAccount,
		"k_4→" + docs, "k_4→" + all,
	}
	var e5 string
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, task := range testenv.Tasks(t, e.kc) {
			if task.AccountID == b && task.EventType == "face.verified" {
				e5 = task.EventID
				return nil
			}
		}
		return fmt.Errorf("no task for the kcat event without an id yet")
	})
	want = append(want, e5+"→"+otherAccount)
	got := waitTasks(t, e.kc, want)
	if len(got) != len(want) {
		t.Fatalf("%d tasks for %d (event, endpoint) pairs: duplicates without a crash", len(got), len(want))
	}

	for _, task := range got {
		var p schemas.Payload
		if err := json.Unmarshal(task.Body, &p); err != nil {
			t.Fatalf("body %s: %v", task.Body, err)
		}
		if task.DeliveryID != schemas.DeliveryID(task.EventID, task.EndpointID) || task.Attempt != 1 || p.ID != task.EventID || p.Type != task.EventType ||
			time.Since(task.AcceptedAt) > time.Minute || p.Created == 0 || !strings.HasPrefix(string(p.Data), `{"n":`) {
			t.Errorf("task %+v body %s", task, task.Body)
		}
		var keys map[string]json.RawMessage
		json.Unmarshal(task.Body, &keys)
		if len(keys) != 4 {
			t.Errorf("body %s has other fields than id, type, created, data", task.Body)
		}
		if task.EventID == "ord_2" && p.Created != 1700000000 || task.EventID == "k_4" && p.Created != 1700000004 {
			t.Errorf("created not kept: %s", task.Body)
		}
		if task.AccountID != map[bool]string{true: b, false: a}[task.EndpointID == otherAccount] {
			t.Errorf("task of account %s for endpoint %s", task.AccountID, task.EndpointID)
		}
	}

	// The bad messages are quarantined with their reason, unchanged.
	invalid, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEventsInvalid))
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, m := range invalid {
		for _, h := range m.Headers {
			if h.Key == schemas.HeaderInvalidReason {
				reasons[string(m.Value)] = string(h.Value)
			}
		}
	}
	f := func(value, wantReason string) {
		t.Helper()
		if r, ok := reasons[value]; !ok || !strings.Contains(r, wantReason) {
			t.Errorf("quarantine of %s: reason %q (present %v), want it to mention %q", value, r, ok, wantReason)
		}
	}
	f(`this is not json`, "JSON object")
	f(`{"id":"k_bad","type":"document.nope","account_id":"acct_a","data":{}}`, "type")
	f(`{"id":"k_key","type":"document.signed","account_id":"acct_a","data":{}}`, "key")
	if len(invalid) != 3 {
		t.Errorf("%d quarantined messages, want 3", len(invalid))
	}

	// The metrics count both paths, the quarantine and the lag.
	testenv.Eventually(t, 10*time.Second, func() error {
		m := testenv.Scrape(t, e.g.OpsAddr()) + testenv.Scrape(t, r.OpsAddr())
		for _, want := range []string{
			`zaits_gateway_events_accepted_total{path="http"} 3`,
			`zaits_router_events_total{source="http"} 3`,
			`zaits_router_events_total{source="kafka"} 2`,
			`zaits_router_quarantined_total{reason="json"} 1`,
			`zaits_router_quarantined_total{reason="type"} 1`,
			`zaits_router_quarantined_total{reason="key"} 1`,
			`zaits_router_tasks_total 10`,
			`zaits_router_tasks_per_event_count 5`,
			`zaits_router_lag{partition="0"} 0`,
		} {
			if !strings.Contains(m, want+"\n") {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		return nil
	})

	// kcat's murmur2 partitioner agrees with the gateway's writer: one account, one partition.
	events, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]map[int]bool{}
	for _, m := range events {
		if parts[string(m.Key)] == nil {
			parts[string(m.Key)] = map[int]bool{}
		}
		parts[string(m.Key)][m.Partition] = true
	}
	if len(parts[a]) != 1 || len(parts[b]) != 1 {
		t.Errorf("an account's events are on several partitions: %v", parts)
	}
}

func TestRouterDropsARepublishedEventIDWithinTheWindowAcrossRestarts(t *testing.T) {
	const a, b = "acct_a", "acct_b"
	e := newEnv(t, []string{a, b})
	epA := e.endpoint(a, true, "*")
	epB := e.endpoint(b, true, "*")
	f := e.router()
	body := `{"id":"dup_1","type":"document.signed","account_id":"%s","data":{"v":%d}}`
	e.accept(e.service, fmt.Sprintf(body, a, 1))
	e.accept(e.service, fmt.Sprintf(body, a, 2)) // same id, same account
	e.accept(e.service, fmt.Sprintf(body, b, 3)) // same id, another account: its own event
	testenv.Kcat(t, e.kc, e.kc.Topic(schemas.TopicEvents), "acct_a|"+fmt.Sprintf(body, a, 4))
	e.accept(e.service, `{"id":"mark_1","type":"document.signed","account_id":"acct_a","data":{}}`)
	got := waitTasks(t, e.kc, []string{"dup_1→" + epA, "dup_1→" + epB, "mark_1→" + epA})
	if len(got) != 3 {
		t.Fatalf("%d tasks, want 3: a duplicate got through", len(got))
	}
	for _, task := range got {
		if task.EndpointID == epA && task.EventID == "dup_1" && !strings.Contains(string(task.Body), `"v":1`) {
			t.Errorf("the first publication should win: %s", task.Body)
		}
	}

	// A new router (a restart) rebuilds the window from the log.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	e.router()
	e.accept(e.service, fmt.Sprintf(body, a, 5))
	e.accept(e.service, `{"id":"mark_2","type":"document.signed","account_id":"acct_a","data":{}}`)
	got = waitTasks(t, e.kc, []string{"dup_1→" + epA, "dup_1→" + epB, "mark_1→" + epA, "mark_2→" + epA})
	if len(got) != 4 {
		t.Fatalf("%d tasks, want 4: the restarted router forgot the window", len(got))
	}
}

func TestRouterCrashMidStreamLosesNothingAndRepeatsIdentically(t *testing.T) {
	accounts := []string{"acct_1", "acct_2", "acct_3", "acct_4", "acct_5", "acct_6"}
	e := newEnv(t, accounts, func(c *Config) { c.CommitInterval = 30 * time.Millisecond })
	subs := map[string][]string{}
	for i, acct := range accounts {
		for j := 0; j <= i%3; j++ {
			subs[acct] = append(subs[acct], e.endpoint(acct, true, "*"))
		}
	}
	// A producer keeps publishing batches while the router is killed and restarted.
	const batches, perBatch = 30, 100
	var want []string
	produced := make(chan error, 1)
	go func() {
		for i := range batches {
			var items []string
			for j := range perBatch {
				acct := accounts[(i*perBatch+j)%len(accounts)]
				items = append(items, fmt.Sprintf(`{"id":"c_%d_%d","type":"ocr.completed","account_id":"%s","data":{"i":%d}}`, i, j, acct, j))
			}
			code, body := e.post("/v1/events/batch", e.service, `{"events":[`+strings.Join(items, ",")+`]}`)
			if code != 202 {
				produced <- fmt.Errorf("batch %d: %d %s", i, code, body)
				return
			}
			time.Sleep(20 * time.Millisecond) // pacing the producer, not waiting for a result
		}
		produced <- nil
	}()
	for i := range batches {
		for j := range perBatch {
			for _, ep := range subs[accounts[(i*perBatch+j)%len(accounts)]] {
				want = append(want, fmt.Sprintf("c_%d_%d→%s", i, j, ep))
			}
		}
	}

	f := e.router()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(testenv.Tasks(t, e.kc)); n < 300 {
			return fmt.Errorf("%d tasks so far", n)
		}
		return nil
	})
	f.abort() // mid-stream: no final commit
	before := len(testenv.Tasks(t, e.kc))
	e.router()
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	got := waitTasks(t, e.kc, want)

	// Every repeat is identical: same delivery id, body and headers.
	first := map[string]schemas.Task{}
	dups := 0
	for _, task := range got {
		k := task.EventID + "→" + task.EndpointID
		p, ok := first[k]
		if !ok {
			first[k] = task
			continue
		}
		dups++
		if p.DeliveryID != task.DeliveryID || string(p.Body) != string(task.Body) || !p.AcceptedAt.Equal(task.AcceptedAt) || p.Attempt != task.Attempt {
			t.Fatalf("repeat differs:\n%+v\n%+v", p, task)
		}
	}
	// Per endpoint (one partition, read in offset order) the first
	// occurrences follow the order the account's events were accepted; a
	// repeat after the crash replays a suffix and is skipped here.
	done := map[string]bool{}
	lastSeq := map[string]int{}
	for _, task := range got {
		k := task.EventID + "→" + task.EndpointID
		if done[k] {
			continue
		}
		done[k] = true
		var i, j int
		if _, err := fmt.Sscanf(task.EventID, "c_%d_%d", &i, &j); err != nil {
			t.Fatal(err)
		}
		n := i*perBatch + j
		if prev, ok := lastSeq[task.EndpointID]; ok && n < prev {
			t.Fatalf("endpoint %s received event %d after %d", task.EndpointID, n, prev)
		}
		lastSeq[task.EndpointID] = n
	}
	t.Logf("%d tasks before the crash, %d after, %d repeated after the restart (of %d)", before, len(got), dups, len(want))
	if before >= len(want) {
		t.Fatalf("the router finished before it was killed: not a mid-stream crash")
	}
}
