package endpoint

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

func startStore(t *testing.T, kc *broker.Config, overlap time.Duration) *Store {
	t.Helper()
	s, err := NewStore(Config{Dev: true, RotationOverlap: overlap}, kc, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newEndpoint(account string) schemas.Endpoint {
	return schemas.Endpoint{AccountID: account, URL: "https://example.com/hook", Events: []string{"document.*"}, Active: true}
}

func TestCRUDReadYourWritesAndRestart(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)

	e, secret, err := s.Create(ctx(t), newEndpoint("acct_a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.ID) < 23 || e.ID[:3] != "we_" || len(secret) < 40 || secret[:6] != "whsec_" || e.Version != 1 {
		t.Fatalf("bad create: id=%q secret=%q version=%d", e.ID, secret, e.Version)
	}
	// Standard Webhooks verifiers decode the part after whsec_ as padded standard base64.
	if key, err := base64.StdEncoding.DecodeString(secret[6:]); err != nil || len(key) != 32 {
		t.Fatalf("secret %q is not whsec_ + standard base64 of 32 bytes: %v", secret, err)
	}
	if got := e.SigningSecrets(time.Now()); len(got) != 1 || string(got[0]) != secret {
		t.Fatalf("signing secrets %q, want [%q]", got, secret)
	}
	if _, ok := s.GetForAccount("acct_b", e.ID); ok {
		t.Fatal("another account sees the endpoint")
	}
	if subs := s.Subscribed(nil, "acct_a", "document.signed"); len(subs) != 1 {
		t.Fatalf("subscribed = %d", len(subs))
	}
	if subs := s.Subscribed(nil, "acct_a", "face.verified"); len(subs) != 0 {
		t.Fatalf("subscribed to face.verified = %d", len(subs))
	}

	u, err := s.Update(ctx(t), "acct_a", e.ID, 0, func(ep *schemas.Endpoint) error { ep.Active = false; return nil })
	if err != nil || u.Active || u.Version != 2 {
		t.Fatalf("update: %+v %v", u, err)
	}
	if subs := s.Subscribed(nil, "acct_a", "document.signed"); len(subs) != 0 {
		t.Fatal("inactive endpoint still subscribed")
	}
	if _, err := s.Update(ctx(t), "acct_b", e.ID, 0, func(*schemas.Endpoint) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cross-account update: %v", err)
	}
	e2, _, err := s.Create(ctx(t), newEndpoint("acct_a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx(t), "acct_a", e2.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(e2.ID); ok {
		t.Fatal("deleted endpoint still visible to its writer")
	}

	// A restarted process restores the same state.
	r := startStore(t, kc, time.Hour)
	got, ok := r.Get(e.ID)
	if !ok || got.Version != 2 || got.Active || got.URL != e.URL {
		t.Fatalf("after restart: %+v %v", got, ok)
	}
	if sec := got.SigningSecrets(time.Now()); len(sec) != 1 || string(sec[0]) != secret {
		t.Fatal("secret not restored")
	}
	if _, ok := r.Get(e2.ID); ok {
		t.Fatal("deleted endpoint restored")
	}
	if n := len(r.List("acct_a")); n != 1 {
		t.Fatalf("list after restart = %d", n)
	}
}

func TestTwoInstancesConvergeAndConflictsAreNotLost(t *testing.T) {
	kc := testenv.Kafka(t)
	a := startStore(t, kc, time.Hour)
	b := startStore(t, kc, time.Hour)

	e, _, err := a.Create(ctx(t), newEndpoint("acct"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testenv.Eventually(t, time.Second, func() error {
		if _, ok := b.Get(e.ID); !ok {
			return errors.New("b does not see a's endpoint")
		}
		return nil
	})
	t.Logf("visible on the other instance after %s", time.Since(start))

	// Both instances change version 1 at once: exactly one wins, the other gets ErrConflict.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Update(ctx(t), "acct", e.ID, 1, func(ep *schemas.Endpoint) error {
				ep.Description = []string{"from a", "from b"}[i]
				return nil
			})
		}()
	}
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrConflict):
			conflicts++
		default:
			t.Fatalf("update: %v", err)
		}
	}
	if ok+conflicts != 2 || ok < 1 {
		t.Fatalf("ok=%d conflicts=%d, want one winner", ok, conflicts)
	}
	testenv.Eventually(t, 2*time.Second, func() error {
		ea, _ := a.Get(e.ID)
		eb, _ := b.Get(e.ID)
		if ea.Version != 2 || eb.Version != 2 || ea.Description != eb.Description {
			return errors.New("instances disagree")
		}
		return nil
	})
	// Whatever compaction keeps (the last record of the key) is the winner's state.
	want, _ := a.Get(e.ID)
	if last := lastRecord(t, kc, e.ID); !bytes.Contains(last, []byte(`"description":"`+want.Description+`"`)) {
		t.Fatalf("last record %s is not the winner (%q)", last, want.Description)
	}
}

func TestDeleteIsNotUndoneByALateUpdate(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	e, _, err := s.Create(ctx(t), newEndpoint("acct"))
	if err != nil {
		t.Fatal(err)
	}
	stale := e.Endpoint
	if err := s.Delete(ctx(t), "acct", e.ID, 0); err != nil {
		t.Fatal(err)
	}
	// Another instance that had not yet seen the delete writes version 2.
	stale.Version = 2
	if err := s.write(ctx(t), e.ID, &stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("late update after delete: %v, want ErrConflict", err)
	}
	if _, ok := startStore(t, kc, time.Hour).Get(e.ID); ok {
		t.Fatal("endpoint resurrected after restart")
	}
}

func TestRotationKeepsOldSecretForTheOverlap(t *testing.T) {
	s := startStore(t, testenv.Kafka(t), 2*time.Second)
	e, old, err := s.Create(ctx(t), newEndpoint("acct"))
	if err != nil {
		t.Fatal(err)
	}
	r, fresh, err := s.Rotate(ctx(t), "acct", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got := r.SigningSecrets(now)
	if len(got) != 2 || string(got[0]) != fresh || string(got[1]) != old {
		t.Fatalf("during overlap: %q, want [%q %q]", got, fresh, old)
	}
	if got := r.SigningSecrets(now.Add(3 * time.Second)); len(got) != 1 || string(got[0]) != fresh {
		t.Fatalf("after overlap: %q, want [%q]", got, fresh)
	}

	// At most two live secrets: a rotation during the overlap is refused
	// and changes nothing; retiring the previous secret allows the next.
	if _, _, err := s.Rotate(ctx(t), "acct", e.ID); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("rotation during the overlap: %v, want ErrRotationInProgress", err)
	}
	if cur, _ := s.Get(e.ID); cur.Version != r.Version {
		t.Fatalf("a refused rotation wrote version %d", cur.Version)
	}
	r, err = s.RetirePrevious(ctx(t), "acct", e.ID)
	if err != nil || len(r.SigningSecrets(time.Now())) != 1 || len(r.Secrets) != 1 {
		t.Fatalf("retire: %v, %d secrets", err, len(r.Secrets))
	}
	for range 3 {
		if _, _, err := s.Rotate(ctx(t), "acct", e.ID); err != nil {
			t.Fatal(err)
		}
		if r, err = s.RetirePrevious(ctx(t), "acct", e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.Secrets) != 1 {
		t.Fatalf("%d stored secrets after retired rotations, want 1", len(r.Secrets))
	}
	// Once the overlap ended, a rotation needs no retiring.
	time.Sleep(2100 * time.Millisecond) // the 2 s overlap of this store, not a wait for a result
	if _, _, err := s.Rotate(ctx(t), "acct", e.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if r, _, err = s.Rotate(ctx(t), "acct", e.ID); err != nil || len(r.Secrets) != 2 {
		t.Fatalf("rotation after the overlap: %v, %d stored secrets, want 2 (the expired one dropped)", err, len(r.Secrets))
	}
}

func TestSecretsAreEncryptedAtRest(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	e, secret, err := s.Create(ctx(t), newEndpoint("acct"))
	if err != nil {
		t.Fatal(err)
	}
	raw := lastRecord(t, kc, e.ID)
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(secret[6:])) {
		t.Fatalf("secret in clear in the topic: %s", raw)
	}
	// Another key cannot read it, and a ciphertext cannot move to another endpoint.
	other, _ := NewCipher("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false)
	if _, err := other.Open(e.ID, e.Secrets[0].Ciphertext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := s.cipher.Open("we_other", e.Secrets[0].Ciphertext); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong endpoint: %v", err)
	}
}

func TestCipherConfig(t *testing.T) {
	f := func(key string, dev bool, wantErr bool) {
		t.Helper()
		_, err := NewCipher(key, dev)
		if (err != nil) != wantErr {
			t.Fatalf("NewCipher(%q, %v) = %v, want error %v", key, dev, err, wantErr)
		}
	}
	f("", false, true)
	f("", true, false)
	f("c2hvcnQ=", false, true)
	f("!!!", false, true)
	f("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false, false)
}

// lastRecord reads the newest value of key in the endpoints topic.
// A conditional delete (DELETE with If-Match) applies only to the version
// it names: refused up front when this view already knows better, and
// rejected in the log when another instance's update got there first (the
// tombstone then does not stay the last record of the key).
func TestConditionalDeleteLosesToAnUpdate(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	e, _, err := s.Create(ctx(t), newEndpoint("acct"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx(t), "acct", e.ID, 1, func(ep *schemas.Endpoint) error { ep.Description = "v2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx(t), "acct", e.ID, 1); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete of version 1 at version 2: %v, want ErrConflict", err)
	}
	// Another instance that had not yet seen version 2 deletes version 1.
	if err := s.write(ctx(t), e.ID, nil, kafka.Header{Key: schemas.HeaderIfVersion, Value: []byte("1")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("tombstone for version 1 after version 2: %v, want ErrConflict", err)
	}
	if got, ok := startStore(t, kc, time.Hour).Get(e.ID); !ok || got.Version != 2 {
		t.Fatalf("after a restart: %+v %v, want version 2", got, ok)
	}
	if last := lastRecord(t, kc, e.ID); !bytes.Contains(last, []byte(`"description":"v2"`)) {
		t.Fatalf("last record of the key %q: compaction would drop the endpoint", last)
	}
	if err := s.Delete(ctx(t), "acct", e.ID, 2); err != nil {
		t.Fatalf("delete of the current version: %v", err)
	}
	if _, ok := s.Get(e.ID); ok {
		t.Fatal("still there after deleting its current version")
	}
}

func lastRecord(t *testing.T, kc *broker.Config, key string) []byte {
	t.Helper()
	topic := kc.Topic(schemas.TopicEndpoints)
	_, last, err := broker.Offsets(ctx(t), kc.Client(), topic)
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.BrokerList(), Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var val []byte
	for off := int64(0); off < last[0]; off++ {
		m, err := r.ReadMessage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) == key {
			val = m.Value
		}
	}
	return val
}

// TestAWriteNotReadBackIsReportedAsStored reproduces a CI failure on a
// loaded 3-node cluster: the create was acknowledged by Kafka but the
// store had not read it back within the request's bound, and the answer
// ("unavailable; retry") invited a second create. The error must say that
// the write is stored (ErrNotVisible), and the endpoint must exist for the
// next reader.
func TestAWriteNotReadBackIsReportedAsStored(t *testing.T) {
	kc := testenv.Kafka(t)
	s := startStore(t, kc, time.Hour)
	s.cancel() // the store stops reading its topic; writes still reach Kafka
	s.wg.Wait()

	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, err := s.Create(short, newEndpoint("acct_a"))
	if !errors.Is(err, ErrNotVisible) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create without read-back: %v, want ErrNotVisible and the deadline", err)
	}
	r := startStore(t, kc, time.Hour)
	if n := len(r.List("acct_a")); n != 1 {
		t.Fatalf("a new reader lists %d endpoints, want the 1 written (error was %v)", n, err)
	}
}
