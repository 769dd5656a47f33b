package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// filtered creates an endpoint of account subscribed to events with filter
// (a JSON object; "" for none).
func (e *env) filtered(account, filter string, events ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep := schemas.Endpoint{AccountID: account, URL: "https://example.com/hook", Events: events, Active: true}
	if filter != "" {
		f, err := schemas.CompileFilter([]byte(filter))
		if err != nil {
			e.t.Fatal(err)
		}
		ep.Filter = f.JSON()
	}
	en, _, err := e.store.Create(ctx, ep)
	if err != nil {
		e.t.Fatal(err)
	}
	return en.ID
}

// Filtered endpoints get tasks for exactly the events their filters match:
// a table of events (over HTTP and straight to Kafka) × filters whose
// matches are written out by hand; a changed filter applies to the events
// after the change (the router compiles each endpoint version once).
func TestRouterFiltersLetExactlyTheMatchingEventsThrough(t *testing.T) {
	const a = "acct_a"
	e := newEnv(t, []string{a})
	filters := []struct {
		filter string
		events []string
		want   string // the events below it gets, by index
	}{
		/*0*/ {"", []string{"*"}, "01234"},
		/*1*/ {`{"data.amount": {"$gte": 100}, "data.currency": {"$in": ["EUR", "USD"]}}`, []string{"*"}, "04"},
		/*2*/ {`{"type": "face.verified"}`, []string{"*"}, "2"},
		/*3*/ {`{"$or": [{"data.test": true}, {"data.signer.email": {"$exists": true}}]}`, []string{"*"}, "03"},
		/*4*/ {`{"$not": {"type": {"$in": ["document.signed"]}}}`, []string{"*"}, "23"},
		/*5*/ {`{"data.amount": {"$lt": 100}}`, []string{"document.*"}, "1"},
		/*6*/ {`{"data.nothing": {"$exists": true}}`, []string{"*"}, ""},
		/*7*/ {`{"data.signer.email": {"$gte": "a", "$lt": "b"}, "data.amount": 150}`, []string{"document.signed"}, "0"},
		/*8*/ {`{}`, []string{"face.*"}, "2"},
	}
	ids := make([]string, len(filters))
	for i, f := range filters {
		ids[i] = e.filtered(a, f.filter, f.events...)
	}
	e.router()
	events := []string{
		/*0*/ e.accept(e.service, `{"type":"document.signed","account_id":"acct_a","data":{"amount":150,"currency":"EUR","signer":{"email":"ann@example.com"}}}`),
		/*1*/ e.accept(e.service, `{"type":"document.signed","account_id":"acct_a","data":{"amount":99,"currency":"USD"}}`),
		/*2*/ e.accept(e.service, `{"type":"face.verified","account_id":"acct_a","data":{"score":0.97,"amount":"150"}}`),
		/*3*/ e.accept(e.service, `{"type":"document.completed","account_id":"acct_a","data":{"amount":500,"currency":"GBP","test":true}}`),
		/*4*/ "k_4",
	}
	testenv.Kcat(t, e.kc, e.kc.Topic(schemas.TopicEvents), `acct_a|{"id":"k_4","type":"document.signed","account_id":"acct_a","data":{"amount":100,"currency":"USD"}}`)
	var want []string
	for i, f := range filters {
		for _, c := range f.want {
			want = append(want, events[c-'0']+"→"+ids[i])
		}
	}
	got := waitTasks(t, e.kc, want)
	if len(got) != len(want) {
		t.Fatalf("%d tasks for %d pairs", len(got), len(want))
	}

	// Endpoint 2 now wants document.completed only; endpoint 6 loses its filter.
	ctx := context.Background()
	if _, err := e.store.Update(ctx, a, ids[2], 0, func(ep *schemas.Endpoint) error {
		ep.Filter = json.RawMessage(`{"type":"document.completed"}`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(ctx, a, ids[6], 0, func(ep *schemas.Endpoint) error { ep.Filter = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	e5 := e.accept(e.service, `{"type":"face.verified","account_id":"acct_a","data":{}}`)
	e6 := e.accept(e.service, `{"type":"document.completed","account_id":"acct_a","data":{"amount":1}}`)
	want = append(want,
		e5+"→"+ids[0], e5+"→"+ids[4], e5+"→"+ids[6], e5+"→"+ids[8],
		e6+"→"+ids[0], e6+"→"+ids[2], e6+"→"+ids[4], e6+"→"+ids[5], e6+"→"+ids[6])
	waitTasks(t, e.kc, want)
}

// BenchmarkRouterFilters: events already on <p>.events for 20 accounts are
// fanned out to 3 endpoints without filters per account (filtered=0), or
// to those and 100 filtered endpoints per account, of whose filters
// exactly one matches each event (filtered=100: 100 filters evaluated and
// 4 tasks per event) or none (filtered=100/matching=0: 3 tasks per event,
// as without filters). events/s and tasks/s routed, from the end of the
// router's Start. Use -benchtime=Nx.
func BenchmarkRouterFilters(b *testing.B) {
	b.Run("filtered=0", func(b *testing.B) { benchFilters(b, 0, true) })
	b.Run("filtered=100", func(b *testing.B) { benchFilters(b, 100, true) })
	b.Run("filtered=100/matching=0", func(b *testing.B) { benchFilters(b, 100, false) })
}

func benchFilters(b *testing.B, filtered int, oneMatches bool) {
	const accounts = 20
	e := newEnv(b, nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range accounts {
		acct := fmt.Sprintf("acct_%d", i)
		for range 3 {
			e.filtered(acct, "", "document.*")
		}
		for k := range filtered {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ep := schemas.Endpoint{AccountID: acct, URL: "https://example.com/hook", Events: []string{"*"}, Active: true,
					Filter: json.RawMessage(fmt.Sprintf(`{"data.bucket":%d,"data.amount":{"$gte":%d}}`, k, map[bool]int{true: 10, false: 100}[oneMatches]))}
				if _, _, err := e.store.Create(context.Background(), ep); err != nil {
					b.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	w := e.kc.NewWriter(e.kc.Topic(schemas.TopicEvents), time.Millisecond)
	w.BatchSize = 5000
	defer w.Close()
	msgs := make([]kafka.Message, 0, 5000)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		acct := fmt.Sprintf("acct_%d", i%accounts)
		msgs = append(msgs, kafka.Message{Key: []byte(acct), Value: fmt.Appendf(nil,
			`{"id":"evt_%d","type":"document.signed","account_id":"%s","data":{"document_id":"doc_%d","bucket":%d,"amount":50,"signer":{"email":"john@example.com"}}}`, i, acct, i, (i/accounts)%100)})
		if len(msgs) == cap(msgs) || i == b.N-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	r, err := New(e.cfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	// Timed from the end of Start (its endpoint store has caught up with
	// the 60 or 2,060 endpoint records, the group is joined).
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Stop(ctx)
	b.ResetTimer()
	start := time.Now()
	routed := func() float64 { return counterValue(r.m.fromHTTP) + counterValue(r.m.fromKafka) }
	for routed() < float64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	extra := 0
	if filtered > 0 && oneMatches {
		extra = 1
	}
	if want := float64(b.N * (3 + extra)); counterValue(r.m.tasks) != want {
		b.Fatalf("%v tasks, want %v", counterValue(r.m.tasks), want)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(counterValue(r.m.tasks)/el.Seconds(), "tasks/s")
}
