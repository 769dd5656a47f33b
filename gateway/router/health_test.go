package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// An endpoint whose every attempt failed for the period (5 days) is
// disabled and its account told; one that failed as long but was
// re-activated a day ago, one that failed for 4 days, and one that
// succeeded an hour ago stay active.
func TestEndpointsFailingForDaysAreDisabled(t *testing.T) {
	e := newEnv(t, []string{"acct_a"})
	_, db := testenv.ClickHouse(t)
	an := &analytics.Config{Kafka: e.kc, ClickHouseAddr: testenv.ClickHouseAddr(), ClickHouseDatabase: db, OpsListen: "127.0.0.1:0", BatchInterval: 100 * time.Millisecond}
	a, err := analytics.New(*an, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) }) //nolint:errcheck

	now := time.Now().UTC()
	day := 24 * time.Hour
	failing := e.endpoint("acct_a", true, "*")
	reactivated := e.endpoint("acct_a", true, "*")
	recent := e.endpoint("acct_a", true, "*")
	fourDays := e.endpoint("acct_a", true, "*")
	// Active since: a week ago, but a day ago for the re-activated one.
	activate := func(id string, at time.Time) {
		at = at.Truncate(time.Second)
		if _, err := e.store.Update(ctx, "acct_a", id, 0, func(ep *schemas.Endpoint) error { ep.ActivatedAt = &at; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	activate(failing, now.Add(-8*day))
	activate(fourDays, now.Add(-8*day))
	activate(reactivated, now.Add(-day))
	var msgs []kafka.Message
	attempt := func(ep string, n int, outcome string, at time.Time) {
		v, _ := json.Marshal(schemas.Attempt{DeliveryID: fmt.Sprintf("del_%s_%d", ep, n), EventID: fmt.Sprintf("e%d", n), EventType: "ocr.completed",
			AccountID: "acct_a", EndpointID: ep, Attempt: 1, Outcome: outcome, HTTPStatus: 500, AcceptedAt: at, AttemptedAt: at, EventPartition: 0, EventOffset: int64(n)})
		msgs = append(msgs, kafka.Message{Key: []byte(ep), Value: v})
	}
	history := func(ep string, lastOK time.Time, failFrom time.Time) {
		if !lastOK.IsZero() {
			attempt(ep, 0, schemas.OutcomeSuccess, lastOK)
		}
		for i, at := 1, failFrom; at.Before(now); i, at = i+1, at.Add(6*time.Hour) {
			attempt(ep, i, schemas.OutcomeRetrying, at)
		}
		attempt(ep, 999, schemas.OutcomeFailed, now.Add(-10*time.Minute))
	}
	history(failing, now.Add(-7*day), now.Add(-6*day))
	history(reactivated, now.Add(-7*day), now.Add(-6*day))
	history(fourDays, now.Add(-5*day), now.Add(-4*day))
	history(recent, now.Add(-time.Hour), now.Add(-30*time.Minute))
	w := e.kc.NewWriter(e.kc.Topic(schemas.TopicAttempts), time.Millisecond)
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	e.cfg.History = an
	e.cfg.HealthInterval = time.Hour // the test runs the check itself
	r := e.router()
	testenv.Eventually(t, 30*time.Second, func() error {
		got, err := r.history.FailingEndpoints(ctx, now.Add(-30*day), now.Add(-2*time.Hour), now.Add(-5*day))
		if err != nil || len(got) < 2 {
			return fmt.Errorf("failing endpoints so far %v, %v", got, err)
		}
		return nil
	})
	if err := r.checkHealth(ctx, now); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if en, _ := e.store.Get(failing); en.Active || en.DisabledReason != schemas.DisabledFailing || en.DisabledAt == nil {
			return fmt.Errorf("failing endpoint: active %v, reason %q", en.Active, en.DisabledReason)
		}
		return nil
	})
	for _, id := range []string{reactivated, recent, fourDays} {
		if en, _ := e.store.Get(id); !en.Active {
			t.Errorf("endpoint %s disabled (%s)", id, en.DisabledReason)
		}
	}
	// The account is told once, even when the check runs again.
	if err := r.checkHealth(ctx, now); err != nil {
		t.Fatal(err)
	}
	var told []string
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := testenv.ReadAll(t, e.kc, e.kc.Topic(schemas.TopicEvents))
		if err != nil {
			return err
		}
		told = told[:0]
		for _, m := range evs {
			var ev schemas.Event
			if json.Unmarshal(m.Value, &ev) == nil && ev.Type == schemas.EventEndpointDisabled {
				var d struct {
					EndpointID string `json:"endpoint_id"`
					Reason     string `json:"reason"`
				}
				json.Unmarshal(ev.Data, &d) //nolint:errcheck
				told = append(told, d.EndpointID+":"+d.Reason)
			}
		}
		if len(told) == 0 {
			return fmt.Errorf("no webhook.endpoint.disabled event")
		}
		return nil
	})
	if len(told) != 1 || told[0] != failing+":failing" {
		t.Fatalf("events %v, want one for %s", told, failing)
	}
}
