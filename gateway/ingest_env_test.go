package gateway

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
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

// newIngestEnv starts a gateway; mutate adjusts its configuration (for
// example Fanout.Disabled to run routers by hand).
func newIngestEnv(t testing.TB, accounts []string, mutate ...func(*Config)) *ingestEnv {
	t.Helper()
	kc := testenv.Kafka(t)
	e := &ingestEnv{t: t, kc: kc, keys: map[string]string{}}
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	cfg.Kafka, cfg.Endpoints, cfg.Dev = kc, &endpoint.Config{Dev: true}, true
	cfg.Listen, cfg.OpsListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Fanout.CommitInterval = 100 * time.Millisecond
	cfg.Fanout.SessionTimeout = 6 * time.Second
	cfg.RateLimit = 0
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

// endpoint creates an endpoint of account subscribed to events.
func (e *ingestEnv) endpoint(account string, active bool, events ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	en, _, err := e.g.store.Create(ctx, schemas.Endpoint{AccountID: account, URL: "https://example.com/hook", Events: events, Active: active, Ordering: schemas.OrderingDefault})
	if err != nil {
		e.t.Fatal(err)
	}
	return en.ID
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
	req, _ := http.NewRequest("POST", "http://"+e.g.Addr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// kcat produces lines "key|value" to topic with kcat, the librdkafka
// command-line producer: a plain Kafka client that is not this project's
// code. murmur2_random is the Java client's partitioner, which the
// gateway's own writer uses too (README: producing events).
func kcat(t testing.TB, kc *broker.Config, topic string, lines ...string) {
	t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", kc.Brokers, "-t", topic, "-K", "|", "-X", "partitioner=murmur2_random", "-X", "acks=all")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || strings.Contains(stderr.String(), "failed") {
		t.Fatalf("kcat: %v: %s", err, stderr.String())
	}
}

// readAll returns every message of topic, partition by partition.
func readAll(t testing.TB, kc *broker.Config, topic string) ([]kafka.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := kc.Client()
	first, last, err := broker.Offsets(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	var out []kafka.Message
	for p, end := range last {
		for off := first[p]; off < end; {
			resp, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			if resp.Error != nil {
				return nil, resp.Error
			}
			n := 0
			for {
				r, err := resp.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, err
				}
				if r.Offset < off {
					continue
				}
				m := kafka.Message{Topic: topic, Partition: p, Offset: r.Offset, Time: r.Time}
				m.Key, _ = readBytes(r.Key)
				m.Value, _ = readBytes(r.Value)
				for _, h := range r.Headers {
					m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
				}
				out = append(out, m)
				off = r.Offset + 1
				n++
			}
			if n == 0 {
				break
			}
		}
	}
	return out, nil
}

// tasks returns the tasks on <p>.deliveries.
func tasks(t testing.TB, kc *broker.Config) []schemas.Task {
	t.Helper()
	msgs, err := readAll(t, kc, kc.Topic(schemas.TopicDeliveries))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]schemas.Task, 0, len(msgs))
	for _, m := range msgs {
		task, err := schemas.ParseTask(m)
		if err != nil {
			t.Fatalf("message at %d/%d is not a task: %v", m.Partition, m.Offset, err)
		}
		if string(m.Key) != task.EndpointID {
			t.Fatalf("task for %s keyed %q", task.EndpointID, m.Key)
		}
		out = append(out, task)
	}
	return out
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
		got = tasks(t, kc)
		if p := pairs(got); strings.Join(p, " ") != strings.Join(want, " ") {
			return fmt.Errorf("tasks:\n got  %v\n want %v", p, want)
		}
		return nil
	})
	return got
}
