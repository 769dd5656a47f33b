package dispatcher_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// testSchedule is the seed's 1m,5m,30m,2h scaled down.
var testSchedule = dispatcher.Schedule{400 * time.Millisecond, 800 * time.Millisecond, 1200 * time.Millisecond, 1600 * time.Millisecond}

func testConfig(kc *broker.Config) dispatcher.Config {
	return dispatcher.Config{
		Kafka:                kc,
		Endpoints:            &endpoint.Config{Dev: true, RotationOverlap: time.Hour},
		Delivery:             &dispatcher.ClientConfig{AllowNetworks: loopback, Timeout: 2 * time.Second, MaxConnsPerHost: 1024},
		OpsListen:            "127.0.0.1:0",
		Group:                kc.TopicPrefix + "-dispatcher",
		RetrySchedule:        testSchedule,
		RetryAfterMax:        time.Hour,
		Concurrency:          512,
		PartitionBuffer:      2000,
		PartitionBufferBytes: 16 << 20,
		CommitInterval:       200 * time.Millisecond,
		SessionTimeout:       6 * time.Second,
	}
}

func startDispatcher(t testing.TB, cfg dispatcher.Config) *dispatcher.Dispatcher {
	t.Helper()
	return startDispatcherWith(t, cfg, prometheus.NewRegistry())
}

func startDispatcherWith(t testing.TB, cfg dispatcher.Config, reg *prometheus.Registry) *dispatcher.Dispatcher {
	t.Helper()
	d, err := dispatcher.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return d
}

func startStore(t testing.TB, kc *broker.Config) *endpoint.Store {
	t.Helper()
	s, err := endpoint.NewStore(endpoint.Config{Dev: true, RotationOverlap: time.Hour}, kc, slog.New(slog.DiscardHandler), nil)
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

// arrival is one request the receiver got.
type arrival struct {
	seq        int
	deliveryID string
	at         time.Time
	acceptedAt time.Time
}

// behaviour answers the n-th (0-based) request to an endpoint.
type behaviour func(n int, ctx *fasthttp.RequestCtx)

// receiver is the customers' side: one path per endpoint, every request's
// signatures verified with the seed's algorithm and the official Standard
// Webhooks library, every arrival in a ledger.
type receiver struct {
	t      testing.TB
	ln     net.Listener
	srv    *fasthttp.Server
	mu     sync.Mutex
	eps    map[string]*recvEndpoint // by name
	total  atomic.Int64
	badSig atomic.Int64
	sigErr atomic.Value
}

type recvEndpoint struct {
	id       string
	secret   string
	verifier *standardwebhooks.Webhook
	behave   behaviour
	ledger   []arrival
}

func startReceiver(t testing.TB) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, ln: ln, eps: map[string]*recvEndpoint{}}
	r.srv = &fasthttp.Server{Handler: r.handle, Concurrency: 100000}
	go r.srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() {
		r.srv.Shutdown() //nolint:errcheck
		if n := r.badSig.Load(); n > 0 {
			t.Errorf("%d deliveries failed signature verification, e.g. %v", n, r.sigErr.Load())
		}
	})
	return r
}

func (r *receiver) url(name string) string { return "http://" + r.ln.Addr().String() + "/e/" + name }

// add creates an endpoint in the store that posts to this receiver.
func (r *receiver) add(t testing.TB, s *endpoint.Store, name, ordering string, b behaviour) *endpoint.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, secret, err := s.Create(ctx, schemas.Endpoint{AccountID: "acct_test", URL: r.url(name), Events: []string{"document.*"}, Active: true, Ordering: ordering})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("the Standard Webhooks library rejects secret %q: %v", secret, err)
	}
	r.mu.Lock()
	r.eps[name] = &recvEndpoint{id: e.ID, secret: secret, verifier: wh, behave: b}
	r.mu.Unlock()
	return e
}

func (r *receiver) handle(ctx *fasthttp.RequestCtx) {
	name := strings.TrimPrefix(string(ctx.Path()), "/e/")
	body := append([]byte(nil), ctx.PostBody()...)
	r.mu.Lock()
	ep := r.eps[name]
	r.mu.Unlock()
	if ep == nil {
		ctx.SetStatusCode(404)
		return
	}
	var p struct {
		ID   string `json:"id"`
		Data struct {
			Seq        int   `json:"seq"`
			AcceptedMS int64 `json:"accepted_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		r.fail(fmt.Errorf("%s: body %q: %w", name, body, err))
	}
	h := http.Header{}
	for k, v := range ctx.Request.Header.All() {
		h.Add(string(k), string(v))
	}
	m := hmac.New(sha256.New, []byte(ep.secret))
	m.Write(body)
	if got, want := h.Get("X-Zaits-Signature"), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
		r.fail(fmt.Errorf("%s: X-Zaits-Signature %q, want %q", name, got, want))
	}
	if err := ep.verifier.Verify(body, h); err != nil {
		r.fail(fmt.Errorf("%s: Standard Webhooks: %w", name, err))
	}
	if h.Get("X-Zaits-Delivery") != schemas.DeliveryID(p.ID, ep.id) || h.Get("Webhook-Id") != h.Get("X-Zaits-Delivery") {
		r.fail(fmt.Errorf("%s: delivery id %q, want %q", name, h.Get("X-Zaits-Delivery"), schemas.DeliveryID(p.ID, ep.id)))
	}
	r.mu.Lock()
	n := len(ep.ledger)
	ep.ledger = append(ep.ledger, arrival{seq: p.Data.Seq, deliveryID: h.Get("X-Zaits-Delivery"), at: time.Now(), acceptedAt: time.UnixMilli(p.Data.AcceptedMS)})
	r.mu.Unlock()
	r.total.Add(1)
	if ep.behave != nil {
		ep.behave(n, ctx)
		return
	}
	ctx.SetStatusCode(200)
}

func (r *receiver) fail(err error) {
	r.badSig.Add(1)
	r.sigErr.Store(err)
}

func (r *receiver) ledger(name string) []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.eps[name].ledger)
}

// producer writes tasks to <p>.deliveries the way the router does.
type producer struct {
	kc *broker.Config
	w  *kafka.Writer
}

func newProducer(t testing.TB, kc *broker.Config) *producer {
	w := kc.NewWriter(kc.Topic(schemas.TopicDeliveries), time.Millisecond)
	t.Cleanup(func() { w.Close() })
	return &producer{kc: kc, w: w}
}

func task(e *endpoint.Entry, seq int) schemas.Task {
	now := time.Now()
	evt := fmt.Sprintf("evt_%s_%d", e.ID, seq)
	body := fmt.Sprintf(`{"id":%q,"type":"document.signed","created":%d,"data":{"seq":%d,"accepted_ms":%d}}`, evt, now.Unix(), seq, now.UnixMilli())
	return schemas.Task{
		DeliveryID: schemas.DeliveryID(evt, e.ID), EventID: evt, EventType: "document.signed",
		AccountID: e.AccountID, EndpointID: e.ID, Attempt: 1, AcceptedAt: now, Body: []byte(body),
	}
}

func (p *producer) send(t testing.TB, tasks ...schemas.Task) {
	t.Helper()
	msgs := make([]kafka.Message, len(tasks))
	for i := range tasks {
		msgs[i] = tasks[i].Message("")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := p.w.WriteMessages(ctx, msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// attemptsLog follows <p>.attempts.
type attemptsLog struct {
	mu  sync.Mutex
	all []schemas.Attempt
}

func followAttempts(t testing.TB, kc *broker.Config) *attemptsLog {
	return followTopic(t, kc, schemas.TopicAttempts, func(m kafka.Message, l *attemptsLog) {
		var a schemas.Attempt
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Errorf("attempt record %q: %v", m.Value, err)
		}
		l.all = append(l.all, a)
	})
}

func followTopic(t testing.TB, kc *broker.Config, name string, add func(kafka.Message, *attemptsLog)) *attemptsLog {
	l := &attemptsLog{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range kc.Partitions[name] {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.BrokerList(), Topic: kc.Topic(name), Partition: p, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				l.mu.Lock()
				add(m, l)
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

func (l *attemptsLog) forEndpoint(id string) []schemas.Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []schemas.Attempt
	for _, a := range l.all {
		if a.EndpointID == id {
			out = append(out, a)
		}
	}
	return out
}

func (l *attemptsLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

func status(code int) behaviour {
	return func(_ int, ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(code) }
}

func eventually(t testing.TB, d time.Duration, f func() error) { testenv.Eventually(t, d, f) }

var errNotYet = errors.New("not yet")

// metricValue sums the samples of a counter, gauge or histogram (its
// count) named name whose labels include want.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	v, _ := metricSamples(t, reg, name, want)
	return v
}

// metricSamples is metricValue plus the number of samples found.
func metricSamples(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) (float64, int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			n++
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, n
}

// interleaved returns tasks 0..n-1 of every endpoint, sequence by sequence.
func interleaved(n int, eps []*endpoint.Entry) []schemas.Task {
	var ts []schemas.Task
	for seq := range n {
		for _, e := range eps {
			ts = append(ts, task(e, seq))
		}
	}
	return ts
}

// warmUp sends one task (sequence number warmupSeq) to each of eps and
// waits until all arrived: the group has joined and connections are open.
func warmUp(t testing.TB, p *producer, recv *receiver, eps []*endpoint.Entry) {
	t.Helper()
	var ws []schemas.Task
	for _, e := range eps {
		ws = append(ws, task(e, warmupSeq))
	}
	p.send(t, ws...)
	eventually(t, 30*time.Second, func() error {
		if n := recv.total.Load(); n < int64(len(eps)) {
			return fmt.Errorf("%d warm-up deliveries", n)
		}
		return nil
	})
}

// warmupSeq is the sequence number of warm-up tasks.
const warmupSeq = 1000
