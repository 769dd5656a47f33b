package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/gateway/router"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// zaits dead lists an endpoint's or an account's dead letters (only
// theirs) and replays them through a redrive job that a router runs: each
// task starts a new run of the retry schedule after the attempts it had.
func TestDeadListsAndReplays(t *testing.T) {
	kc := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := endpoint.NewStore(endpoint.Config{Dev: true}, kc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer store.Stop()
	mk := func(account string) string {
		e, _, err := store.Create(ctx, schemas.Endpoint{AccountID: account, URL: "https://example.com/h", Events: []string{"*"}, Active: true})
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	a1, a2, b1 := mk("acct_a"), mk("acct_a"), mk("acct_b")
	w := kc.NewWriter(kc.Topic(schemas.TopicDead), time.Millisecond)
	defer w.Close()
	for i, ep := range []string{a1, a1, a2, b1} {
		account := "acct_a"
		if ep == b1 {
			account = "acct_b"
		}
		task := schemas.Task{DeliveryID: fmt.Sprintf("del_%d", i), EventID: fmt.Sprintf("e%d", i), EventType: "ocr.completed", AccountID: account,
			EndpointID: ep, Attempt: 5, AcceptedAt: time.Now().Add(-time.Hour), Body: []byte(`{}`), EventPartition: -1, EventOffset: -1}
		if err := w.WriteMessages(ctx, task.Message("")); err != nil {
			t.Fatal(err)
		}
	}
	flags := []string{"-kafka.brokers=" + kc.Brokers, "-kafka.topic-prefix=" + kc.TopicPrefix}
	for name, n := range kc.Partitions {
		flags = append(flags, fmt.Sprintf("-kafka.partitions.%s=%d", name, n))
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := dead(append(args, flags...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	list := func(args ...string) []deadLetter {
		t.Helper()
		code, out, errOut := run(append([]string{"list"}, args...)...)
		if code != 0 {
			t.Fatalf("dead list %v = %d: %s", args, code, errOut)
		}
		var ls []deadLetter
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var l deadLetter
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			ls = append(ls, l)
		}
		return ls
	}
	if ls := list("-endpoint", a1); len(ls) != 2 || ls[0].EndpointID != a1 || ls[0].Attempts != 5 {
		t.Fatalf("endpoint a1: %+v", ls)
	}
	if ls := list("-account", "acct_a"); len(ls) != 3 {
		t.Fatalf("account acct_a: %+v", ls)
	}
	if ls := list("-account", "acct_a", "-since", time.Now().Add(time.Minute).UTC().Format(time.RFC3339)); len(ls) != 0 {
		t.Fatalf("a window after the dead letters: %+v", ls)
	}
	if code, _, _ := run("list"); code != 2 {
		t.Fatal("dead list without -endpoint or -account must fail")
	}
	if code, _, _ := run("list", "-endpoint", a1, "-since", "today"); code != 2 {
		t.Fatal("a malformed -since must fail")
	}

	// Replay for the account: one job per endpoint, run by a router.
	r, err := router.New(router.Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true}, OpsListen: "127.0.0.1:0", DisableAfter: -1},
		slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background()) //nolint:errcheck
	code, out, errOut := run("replay", "-account", "acct_a", "-wait", "-timeout", "60s")
	if code != 0 || strings.Count(out, `"status":"completed"`) != 2 {
		t.Fatalf("dead replay = %d\n%s\n%s", code, out, errOut)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		var redriven []schemas.Task
		for _, task := range testenv.Tasks(t, kc) {
			if task.Trigger == schemas.TriggerRedrive {
				redriven = append(redriven, task)
			}
		}
		if len(redriven) != 3 {
			return fmt.Errorf("%d redriven tasks", len(redriven))
		}
		for _, task := range redriven {
			if task.AccountID != "acct_a" || task.Attempt != 1 || task.AttemptBase != 5 || task.HistoryAttempt() != 6 {
				return fmt.Errorf("task %+v", task)
			}
		}
		return nil
	})
}
