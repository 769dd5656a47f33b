package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
)

// ingestEnv is a gateway on a fresh topic set with one service token and
// one API key per account in keys.
type ingestEnv struct {
	t       testing.TB
	kc      *broker.Config
	g       *Gateway
	service string            // service token
	keys    map[string]string // account → API key
}

// newIngestEnv starts a gateway (without a router); mutate adjusts its
// configuration.
func newIngestEnv(t testing.TB, accounts []string, mutate ...func(*Config)) *ingestEnv {
	t.Helper()
	kc := testenv.Kafka(t)
	e := &ingestEnv{t: t, kc: kc, keys: map[string]string{}}
	cfg := Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true}, Dev: true,
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", RateLimit: -1}
	tok, entry, err := MintKey("producer", true)
	if err != nil {
		t.Fatal(err)
	}
	e.service, cfg.ServiceTokens = tok, entry
	var entries []string
	for _, a := range accounts {
		key, entry, err := MintKey(a, false)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[a] = key
		entries = append(entries, entry)
	}
	cfg.APIKeys = strings.Join(entries, ",")
	for _, m := range mutate {
		m(&cfg)
	}
	e.g = startAPI(t, cfg)
	return e
}

// post sends body to path with the bearer token and returns status and body.
func (e *ingestEnv) post(path, token, body string) (int, string) {
	e.t.Helper()
	code, _, b := e.postH(path, token, body)
	return code, b
}

// postH is post that also returns the response headers.
func (e *ingestEnv) postH(path, token, body string) (int, http.Header, string) {
	e.t.Helper()
	return testenv.Post(e.t, "http://"+e.g.Addr()+path, token, body)
}

// accept posts one event and returns its id from the 202 answer.
func (e *ingestEnv) accept(token, event string) string {
	e.t.Helper()
	return testenv.Accept(e.t, e.g.Addr(), token, event)
}
