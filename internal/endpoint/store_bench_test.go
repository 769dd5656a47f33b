package endpoint

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// viewStore is a store that is never started: tests fill it through apply.
func viewStore(tb testing.TB) *Store {
	s, err := NewStore(Config{Dev: true}, &broker.Config{Brokers: "127.0.0.1:1", TopicPrefix: "view"}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// benchStore is a store filled through apply, without Kafka: n endpoints of
// one account, every third subscribed to document.*.
func benchStore(b *testing.B, n int) *Store {
	s := viewStore(b)
	now := time.Now()
	for i := range n {
		ep := schemas.Endpoint{ID: fmt.Sprintf("we_%024d", i), AccountID: "acct", URL: "https://example.com", Active: true,
			Events: []string{"face.verified"}, Version: 1, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		if i%3 == 0 {
			ep.Events = []string{"document.*"}
		}
		v, _ := json.Marshal(&ep)
		s.apply(kafka.Message{Key: []byte(ep.ID), Value: v})
	}
	return s
}

func BenchmarkList(b *testing.B) {
	s := benchStore(b, 200)
	b.ReportAllocs()
	for b.Loop() {
		if len(s.List("acct")) != 200 {
			b.Fatal("wrong length")
		}
	}
}

func BenchmarkSubscribed(b *testing.B) {
	s := benchStore(b, 200)
	var dst []*Entry
	b.ReportAllocs()
	for b.Loop() {
		dst = s.Subscribed(dst[:0], "acct", "document.signed")
		if len(dst) != 67 {
			b.Fatalf("got %d", len(dst))
		}
	}
}

// The cached lists follow every change: create, update, deactivate, delete.
func TestCachedListsFollowChanges(t *testing.T) {
	s := viewStore(t)
	put := func(id string, version int64, active bool, events ...string) {
		v, _ := json.Marshal(&schemas.Endpoint{ID: id, AccountID: "acct", Active: active, Events: events, Version: version})
		s.apply(kafka.Message{Key: []byte(id), Value: v})
	}
	f := func(eventType string, want ...string) {
		t.Helper()
		got := s.Subscribed(nil, "acct", eventType)
		if len(got) != len(want) {
			t.Fatalf("Subscribed(%s) = %d entries, want %v", eventType, len(got), want)
		}
		for i := range got {
			if got[i].ID != want[i] {
				t.Fatalf("Subscribed(%s)[%d] = %s, want %s", eventType, i, got[i].ID, want[i])
			}
		}
	}
	put("we_b", 1, true, "document.*")
	f("document.signed", "we_b")
	put("we_a", 1, true, "document.signed")
	f("document.signed", "we_a", "we_b")
	f("face.verified")
	put("we_b", 2, true, "face.verified")
	f("document.signed", "we_a")
	f("face.verified", "we_b")
	put("we_a", 2, false, "document.signed")
	f("document.signed")
	if n := len(s.List("acct")); n != 2 {
		t.Fatalf("List = %d, want 2", n)
	}
	s.apply(kafka.Message{Key: []byte("we_b")})
	f("face.verified")
	if n := len(s.List("acct")); n != 1 {
		t.Fatalf("List after delete = %d, want 1", n)
	}
}
