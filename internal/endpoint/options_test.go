package endpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Header values are sealed per endpoint and name, opened when the record
// is applied (also by a restarted store); the filter is compiled once per
// version, when the record is applied; what the gateway would refuse is
// dropped at apply time (a reserved header is not sent, a filter that does
// not compile leaves the endpoint unfiltered).
func TestOptionsAreSealedAndCompiledOnApply(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	ep := newEndpoint("acct")
	ep.Filter = json.RawMessage(`{"type":"document.signed"}`)
	ep.RateLimit = 7
	e, _, err := s.Create(ctx(t), ep, Header{Name: "X-Tenant", Value: "acme"}, Header{Name: "Authorization", Value: "Bearer tok_secret_1234"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Header{{"Authorization", "Bearer tok_secret_1234"}, {"X-Tenant", "acme"}}
	if !reflect.DeepEqual(e.DeliveryHeaders(), want) || e.RateLimit != 7 || e.CompiledFilter() == nil || string(e.CompiledFilter().JSON()) != `{"type":"document.signed"}` {
		t.Fatalf("entry: headers %v rate %d filter %v", e.DeliveryHeaders(), e.RateLimit, e.CompiledFilter())
	}
	raw := lastRecord(t, kc, e.ID)
	if bytes.Contains(raw, []byte("tok_secret")) || bytes.Contains(raw, []byte("acme")) {
		t.Fatalf("header value in clear in the topic: %s", raw)
	}
	// A ciphertext opens only for its endpoint and its header name.
	auth := e.Headers[0]
	if _, err := s.cipher.Open(headerAAD(e.ID, "X-Tenant"), auth.Ciphertext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("moved to another name: %v", err)
	}
	if _, err := s.cipher.Open(headerAAD("we_other", auth.Name), auth.Ciphertext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("moved to another endpoint: %v", err)
	}
	if _, err := s.cipher.Open(e.ID, auth.Ciphertext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("opened as a signing secret: %v", err)
	}

	// The compiled filter is the entry's: the same for every reader until a new version.
	got, _ := s.Get(e.ID)
	subs := s.Subscribed(nil, "acct", "document.signed")
	if got.CompiledFilter() != e.CompiledFilter() || len(subs) != 1 || subs[0].CompiledFilter() != e.CompiledFilter() {
		t.Fatal("the filter was compiled again without a new version")
	}
	e2, err := s.Update(ctx(t), "acct", e.ID, 0, func(ep *schemas.Endpoint) error {
		ep.Filter = json.RawMessage(`{"type":"document.completed"}`)
		ep.Headers = append(ep.Headers, schemas.EndpointHeader{Name: "X-Zaits-Signature", Ciphertext: s.cipher.Seal(headerAAD(ep.ID, "X-Zaits-Signature"), []byte("forged"))},
			schemas.EndpointHeader{Name: "X-Moved", Ciphertext: auth.Ciphertext})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(e2.CompiledFilter().JSON()) != `{"type":"document.completed"}` || !reflect.DeepEqual(e2.DeliveryHeaders(), want) {
		t.Fatalf("version 2: filter %s headers %v (a reserved or moved header kept?)", e2.CompiledFilter().JSON(), e2.DeliveryHeaders())
	}
	e3, err := s.Update(ctx(t), "acct", e.ID, 0, func(ep *schemas.Endpoint) error {
		ep.Filter = json.RawMessage(`{"type":{"$regex":"x"}}`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if e3.CompiledFilter() != nil {
		t.Fatal("a filter that does not compile was kept")
	}

	// A restarted store opens the same headers.
	s2 := startStore(t, kc, time.Hour)
	r, ok := s2.Get(e.ID)
	if !ok || !reflect.DeepEqual(r.DeliveryHeaders(), want) || r.Version != 3 {
		t.Fatalf("after a restart: %v", r)
	}
}
