package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustFilter(t testing.TB, src string) *Filter {
	t.Helper()
	f, err := CompileFilter([]byte(src))
	if err != nil {
		t.Fatalf("CompileFilter(%s): %v", src, err)
	}
	return f
}

func filterEvent(t testing.TB, src string) *FilterEvent {
	t.Helper()
	ev, issues := ParseEvent([]byte(src), "")
	if len(issues) > 0 {
		t.Fatalf("event %s: %v", src, issues)
	}
	if ev.Created == 0 {
		ev.Created = 1700000000
	}
	var fe FilterEvent
	fe.Reset(&ev)
	return &fe
}

// The events and filters of the table below.
var (
	filterTableEvents = []string{
		/*0*/ `{"id":"e0","type":"document.signed","account_id":"acct_a","data":{"amount":150,"currency":"EUR","signer":{"email":"ann@example.com","verified":true},"items":[{"sku":"a1"},{"sku":"b2"}]}}`,
		/*1*/ `{"id":"e1","type":"document.signed","account_id":"acct_a","data":{"amount":99.5,"currency":"USD","signer":{"email":"bob@example.org","verified":false}}}`,
		/*2*/ `{"id":"e2","type":"face.verified","account_id":"acct_a","data":{"amount":"150","currency":null,"score":0.97}}`,
		/*3*/ `{"id":"e3","type":"ocr.completed","account_id":"acct_a","created":1800000000,"data":{}}`,
		/*4*/ `{"id":"e4","type":"document.signed","account_id":"acct_a","data":{"amount":100,"currency":"GBP","signer":"ann@example.com","at":"2026-01-02T03:04:05Z"}}`,
	}
	// Each filter with, by hand, the events (by index above) it lets through.
	filterTable = []struct {
		filter string
		want   string
	}{
		{`{}`, "01234"},
		{`{"type": "document.signed"}`, "014"},
		{`{"type": {"$ne": "document.signed"}}`, "23"},
		{`{"type": {"$in": ["face.verified", "ocr.completed"]}}`, "23"},
		{`{"data.amount": {"$gte": 100}, "data.currency": {"$in": ["EUR", "USD"]}}`, "0"},
		{`{"data.amount": {"$gte": 100}}`, "04"},
		{`{"data.amount": {"$gt": 100}}`, "0"},
		{`{"data.amount": {"$lt": 100}}`, "1"},
		{`{"data.amount": {"$lte": 100}}`, "14"},
		{`{"data.amount": {"$gt": 99, "$lt": 101}}`, "14"},
		{`{"data.amount": 150}`, "0"},
		{`{"data.amount": "150"}`, "2"},
		{`{"data.amount": {"$eq": 100}}`, "4"},
		{`{"data.amount": {"$gte": "100"}}`, "2"},
		{`{"data.amount": {"$exists": true}}`, "0124"},
		{`{"data.amount": {"$exists": false}}`, "3"},
		{`{"data.currency": null}`, "2"},
		{`{"data.currency": {"$exists": true}}`, "0124"},
		{`{"data.currency": {"$ne": "EUR"}}`, "1234"},
		{`{"data.currency": {"$nin": ["EUR", "USD"]}}`, "234"},
		{`{"data.signer.email": "ann@example.com"}`, "0"},
		{`{"data.signer": "ann@example.com"}`, "4"},
		{`{"data.signer.email": {"$exists": true}}`, "01"},
		{`{"data.signer.verified": true}`, "0"},
		{`{"data.signer.verified": false}`, "1"},
		{`{"data.signer.verified": {"$ne": true}}`, "1234"},
		{`{"data.items.1.sku": "b2"}`, "0"},
		{`{"data.items.01.sku": "b2"}`, ""},
		{`{"data.items.2.sku": {"$exists": true}}`, ""},
		{`{"data.items": {"$exists": true}, "data.items.0": {"$exists": true}}`, "0"},
		{`{"data.score": {"$gte": 0.9}}`, "2"},
		{`{"data": {"$exists": true}}`, "01234"},
		{`{"data.at": {"$gte": "2026-01-01T00:00:00Z", "$lt": "2026-02-01T00:00:00Z"}}`, "4"},
		{`{"created": {"$gt": 1750000000}}`, "3"},
		{`{"id": {"$in": ["e1", "e3"]}}`, "13"},
		{`{"account_id": "acct_a"}`, "01234"},
		{`{"account_id": "acct_b"}`, ""},
		{`{"$or": [{"type": "face.verified"}, {"data.amount": {"$lt": 100}}]}`, "12"},
		{`{"$and": [{"type": "document.signed"}, {"data.currency": "GBP"}]}`, "4"},
		{`{"$not": {"type": "document.signed"}}`, "23"},
		{`{"$not": {"data.amount": {"$gte": 100}}}`, "123"},
		{`{"type": "document.signed", "$not": {"data.signer.verified": true}}`, "14"},
		{`{"$or": [{"$and": [{"data.amount": {"$gte": 100}}, {"data.currency": "EUR"}]}, {"$not": {"data": {"$exists": true}}}]}`, "0"},
		{`{"$or": [{"data.nope": 1}, {"data.currency": {"$in": [null, "GBP"]}}]}`, "24"},
		{`{"data.amount": {"$in": [100, 150]}}`, "04"},
		{`{"data.amount": true}`, ""},
		{`{"data.signer": {"$eq": null}}`, ""},
	}
)

// Every filter of the table lets through exactly the events it lists.
func TestFilterTable(t *testing.T) {
	events := make([]*FilterEvent, len(filterTableEvents))
	for i, s := range filterTableEvents {
		events[i] = filterEvent(t, s)
	}
	for _, row := range filterTable {
		f := mustFilter(t, row.filter)
		var got strings.Builder
		for i, ev := range events {
			if f.Match(ev) {
				fmt.Fprint(&got, i)
			}
		}
		if got.String() != row.want {
			t.Errorf("%s lets through events %q, want %q", row.filter, got.String(), row.want)
		}
		// A freshly reset event (data not decoded yet) gives the same answers.
		for i, s := range filterTableEvents {
			if f.Match(filterEvent(t, s)) != strings.Contains(row.want, fmt.Sprint(i)) {
				t.Errorf("%s on a fresh event %d disagrees", row.filter, i)
			}
		}
	}
	// One FilterEvent reset for each event in turn (as the router uses it):
	// no value remembered for one event leaks into the next, also when the
	// generation counter wraps.
	var fe FilterEvent
	fs := make([]*Filter, len(filterTable))
	for i, row := range filterTable {
		fs[i] = mustFilter(t, row.filter)
	}
	for round := range 2 {
		if round == 1 {
			fe.gen = ^uint32(0) - 2
		}
		for i, src := range filterTableEvents {
			ev, _ := ParseEvent([]byte(src), "")
			if ev.Created == 0 {
				ev.Created = 1700000000
			}
			fe.Reset(&ev)
			for j, f := range fs {
				if f.Match(&fe) != strings.Contains(filterTable[j].want, fmt.Sprint(i)) {
					t.Fatalf("round %d: %s on event %d (reused FilterEvent) disagrees", round, filterTable[j].filter, i)
				}
			}
		}
	}
	var nilFilter *Filter
	if !nilFilter.Match(events[0]) || !(&Filter{}).Match(events[0]) {
		t.Error("a nil or zero filter must match everything")
	}
}

// Filters that do not compile, with the place the error names.
func TestFilterCompileErrors(t *testing.T) {
	f := func(src, wantPath, wantIssue string) {
		t.Helper()
		_, err := CompileFilter([]byte(src))
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Fatalf("CompileFilter(%s) = %v, want a *FilterError", src, err)
		}
		if fe.Path != wantPath || !strings.Contains(fe.Issue, wantIssue) {
			t.Fatalf("CompileFilter(%s) = %q at %q, want %q at %q", src, fe.Issue, fe.Path, wantIssue, wantPath)
		}
	}
	f(`[]`, "", "must be a JSON object")
	f(`"x"`, "", "must be a JSON object")
	f(`null`, "", "must be a JSON object")
	f(`{`, "", "must be a JSON object")
	f(`{"type": "a"} {}`, "", "must be a JSON object")
	f(`{"type": {"$regex": "doc.*"}}`, "type.$regex", `unknown operator "$regex"`)
	f(`{"$nor": []}`, "$nor", `unknown operator "$nor"`)
	f(`{"data.amount": {"$gte": true}}`, "data.amount.$gte", "must be a number or a string")
	f(`{"data.amount": {"$gte": [1]}}`, "data.amount.$gte", "must be a number or a string")
	f(`{"data.amount": {"$lt": null}}`, "data.amount.$lt", "must be a number or a string")
	f(`{"data.amount": {"$in": 5}}`, "data.amount.$in", "non-empty array")
	f(`{"data.amount": {"$in": []}}`, "data.amount.$in", "non-empty array")
	f(`{"data.amount": {"$nin": [1, {"a": 1}]}}`, "data.amount.$nin[1]", "must be a string, number")
	f(`{"data.amount": {"$eq": [1]}}`, "data.amount.$eq", "must be a string, number")
	f(`{"data.amount": {"$exists": "yes"}}`, "data.amount.$exists", "true or false")
	f(`{"data.amount": {}}`, "data.amount", "at least one operator")
	f(`{"data.amount": [1, 2]}`, "data.amount", "needs $in")
	f(`{"data": {"amount": 1}}`, "data.amount", "nested fields are dot paths")
	f(`{"data.amount": {"$gt": 1, "max": 2}}`, "data.amount.max", "nested fields are dot paths")
	f(`{"amount": 1}`, "amount", "a path starts with one of the event's fields")
	f(`{"data..amount": 1}`, "data..amount", "empty segment")
	f(`{"data.": 1}`, "data.", "empty segment")
	f(`{"": 1}`, "", "empty segment")
	f(`{"type.name": "x"}`, "type.name", "has no fields")
	f(`{"data.`+strings.Repeat("a.", 40)+`b": 1}`, "data."+strings.Repeat("a.", 40)+"b", "at most 32 segments")
	f(`{"$and": []}`, "$and", "non-empty array of filters")
	f(`{"$or": {"type": "a"}}`, "$or", "non-empty array of filters")
	f(`{"$and": [{"type": "a"}, 3]}`, "$and[1]", "must be a filter object")
	f(`{"$not": [{"type": "a"}]}`, "$not", "must be a filter object")
	f(`{"$or": [{"$and": [{"data.x": {"$foo": 1}}]}]}`, "$or[0].$and[0].data.x.$foo", `unknown operator "$foo"`)
	deep := `{"type": "a"}`
	for range MaxFilterDepth + 1 {
		deep = `{"$not": ` + deep + `}`
	}
	f(deep, strings.TrimSuffix(strings.Repeat("$not.", MaxFilterDepth+1), "."), "levels deep")
	// Size: compact JSON counts, so whitespace is free; 4096 bytes pass, 4097 do not.
	pad := func(n int) string { // a filter of exactly n compact bytes
		return `{"data.x":"` + strings.Repeat("a", n-len(`{"data.x":""}`)) + `"}`
	}
	if _, err := CompileFilter([]byte(pad(MaxFilterBytes))); err != nil {
		t.Fatalf("a filter of %d bytes: %v", MaxFilterBytes, err)
	}
	if _, err := CompileFilter([]byte(strings.ReplaceAll(pad(MaxFilterBytes), ":", " :   "))); err != nil {
		t.Fatalf("whitespace counted against the limit: %v", err)
	}
	f(pad(MaxFilterBytes+1), "", "at most 4096 bytes")
}

// FuzzFilter: any input either fails to compile with a FilterError, or
// compiles to a filter that never panics on any event, whose $not is its
// negation, whose $and with itself is itself, and whose stored JSON
// compiles to a filter that agrees with it.
func FuzzFilter(f *testing.F) {
	for _, row := range filterTable {
		f.Add([]byte(row.filter), []byte(filterTableEvents[len(row.filter)%len(filterTableEvents)]))
	}
	f.Add([]byte(`{"data.a.0.b": {"$gt": -1e308, "$lt": "z", "$exists": true}}`), []byte(`{"type":"test","account_id":"a","data":{"a":[{"b":1}]}}`))
	f.Add([]byte(`{"$not": {"$or": [{"type": {"$nin": ["x", 1, null, false]}}]}}`), []byte(`{"type":"document.signed","account_id":"a","data":{"x":1e400}}`))
	f.Fuzz(func(t *testing.T, filter, event []byte) {
		flt, err := CompileFilter(filter)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Issue == "" {
				t.Fatalf("CompileFilter(%q) = %v, not a FilterError", filter, err)
			}
			return
		}
		if len(flt.JSON()) > MaxFilterBytes || !json.Valid(flt.JSON()) {
			t.Fatalf("stored JSON %q", flt.JSON())
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(filter, &raw) != nil {
			t.Fatalf("compiled %q, which is not a JSON object", filter)
		}
		ev := Event{ID: "evt_1", Type: "document.signed", AccountID: "acct_a", Created: 1700000000, Data: json.RawMessage(`{}`)}
		if e, issues := ParseEvent(event, ""); len(issues) == 0 {
			ev = e
		} else if json.Valid(event) && bytes.HasPrefix(bytes.TrimSpace(event), []byte("{")) {
			ev.Data = event // any JSON object as data, even one the event rules refuse
		}
		var fe FilterEvent
		fe.Reset(&ev)
		got := flt.Match(&fe)
		again, err := CompileFilter(flt.JSON())
		if err != nil {
			t.Fatalf("the stored JSON %q does not compile: %v", flt.JSON(), err)
		}
		fe.Reset(&ev)
		if again.Match(&fe) != got {
			t.Fatalf("the stored JSON of %q matches differently", filter)
		}
		wrap := func(w string) *Filter {
			src := fmt.Sprintf(w, flt.JSON())
			if len(src) > MaxFilterBytes {
				return nil
			}
			g, err := CompileFilter([]byte(src))
			if err != nil {
				var ferr *FilterError
				if errors.As(err, &ferr) && strings.Contains(ferr.Issue, "levels deep") {
					return nil
				}
				t.Fatalf("%s does not compile: %v", src, err)
			}
			return g
		}
		if not := wrap(`{"$not": %s}`); not != nil {
			fe.Reset(&ev)
			if not.Match(&fe) == got {
				t.Fatalf("$not of %q matches like it (%v) on %q", filter, got, ev.Data)
			}
		}
		if and := wrap(`{"$and": [%[1]s, %[1]s]}`); and != nil {
			fe.Reset(&ev)
			if and.Match(&fe) != got {
				t.Fatalf("$and of %q with itself differs", filter)
			}
		}
	})
}

// BenchmarkFilterMatch: one compiled filter on a fresh event (data decoded
// once), and 100 filters on the same event (data decoded once for all).
func BenchmarkFilterMatch(b *testing.B) {
	ev, _ := ParseEvent([]byte(filterTableEvents[0]), "")
	f := mustFilter(b, `{"data.amount": {"$gte": 100}, "data.currency": {"$in": ["EUR", "USD"]}}`)
	b.Run("one", func(b *testing.B) {
		var fe FilterEvent
		for range b.N {
			fe.Reset(&ev)
			if !f.Match(&fe) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("type-only", func(b *testing.B) {
		g := mustFilter(b, `{"type": {"$in": ["document.signed", "document.completed"]}}`)
		var fe FilterEvent
		for range b.N {
			fe.Reset(&ev)
			if !g.Match(&fe) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("hundred", func(b *testing.B) {
		fs := make([]*Filter, 100)
		for i := range fs {
			fs[i] = mustFilter(b, fmt.Sprintf(`{"data.amount": {"$gte": %d}, "data.currency": "EUR"}`, i*3))
		}
		var fe FilterEvent
		for range b.N {
			fe.Reset(&ev)
			n := 0
			for _, f := range fs {
				if f.Match(&fe) {
					n++
				}
			}
			if n != 51 {
				b.Fatalf("%d matched", n)
			}
		}
	})
}
