package router

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// env is a gateway (the HTTP way into <p>.events) on a fresh topic set,
// with one service token and one API key per account, an endpoint store to
// create endpoints with, and routers started by the test.
type env struct {
	t       testing.TB
	kc      *broker.Config
	g       *gateway.Gateway
	store   *endpoint.Store
	service string            // service token
	keys    map[string]string // account → API key
	cfg     Config            // of the routers the test starts
	gcfg    gateway.Config    // of e.g and of further gateways (e.gateway)
}

func newEnv(t testing.TB, accounts []string, mutate ...func(*Config)) *env {
	t.Helper()
	kc := testenv.Kafka(t)
	e := &env{t: t, kc: kc, keys: map[string]string{}}
	gcfg := gateway.Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true}, Dev: true,
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", RateLimit: -1}
	tok, entry, err := gateway.MintKey("producer", true)
	if err != nil {
		t.Fatal(err)
	}
	e.service, gcfg.ServiceTokens = tok, entry
	var entries []string
	for _, a := range accounts {
		key, entry, err := gateway.MintKey(a, false)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[a] = key
		entries = append(entries, entry)
	}
	gcfg.APIKeys = strings.Join(entries, ",")
	e.gcfg = gcfg
	e.g = e.gateway()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.store, err = endpoint.NewStore(endpoint.Config{Dev: true}, kc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Stop() })
	e.cfg = Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true}, OpsListen: "127.0.0.1:0",
		CommitInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second}
	for _, m := range mutate {
		m(&e.cfg)
	}
	return e
}

// gateway starts another gateway instance (its own endpoint store and
// event writer) with the env's keys and tokens; it stops when the test ends.
func (e *env) gateway() *gateway.Gateway {
	e.t.Helper()
	g, err := gateway.New(e.gcfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { g.Stop(context.Background()) })
	return g
}

// router starts a router; it is stopped when the test ends unless the
// test stopped or aborted it.
func (e *env) router() *Router {
	e.t.Helper()
	r, err := New(e.cfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if !r.aborted.Load() {
			r.Stop(context.Background())
		}
	})
	return r
}

// endpoint creates an endpoint of account subscribed to events.
func (e *env) endpoint(account string, active bool, events ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	en, _, err := e.store.Create(ctx, schemas.Endpoint{AccountID: account, URL: "https://example.com/hook", Events: events, Active: active, Ordering: schemas.OrderingDefault})
	if err != nil {
		e.t.Fatal(err)
	}
	return en.ID
}

// post sends body to the gateway's path with the bearer token.
func (e *env) post(path, token, body string) (int, string) {
	e.t.Helper()
	code, _, b := testenv.Post(e.t, "http://"+e.g.Addr()+path, token, body)
	return code, b
}

// accept posts one event and returns its id from the 202 answer.
func (e *env) accept(token, event string) string {
	e.t.Helper()
	return testenv.Accept(e.t, e.g.Addr(), token, event)
}

// pairs lists tasks as sorted "event→endpoint" strings, duplicates collapsed.
func pairs(ts []schemas.Task) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range ts {
		k := t.EventID + "→" + t.EndpointID
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// waitTasks waits until the tasks on <p>.deliveries cover exactly want
// ("event→endpoint"), and returns them.
func waitTasks(t testing.TB, kc *broker.Config, want []string) []schemas.Task {
	t.Helper()
	sort.Strings(want)
	var got []schemas.Task
	testenv.Eventually(t, 30*time.Second, func() error {
		got = testenv.Tasks(t, kc)
		if p := pairs(got); strings.Join(p, " ") != strings.Join(want, " ") {
			return fmt.Errorf("tasks:\n got  %v\n want %v", p, want)
		}
		return nil
	})
	return got
}
