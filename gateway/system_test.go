package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/gateway/router"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// system is the whole delivery system in this process, on a fresh topic
// set and ClickHouse database: analytics, a dispatcher (retry schedule
// 1s×4, so a failing delivery is dead within seconds), a router (unless
// noRouter) and a gateway with the test accounts' keys, and a receiver on
// 127.0.0.1 whose answer per path the test sets.
type system struct {
	t    *testing.T
	kc   *broker.Config
	db   string
	an   *analytics.Config
	g    *Gateway
	d    *dispatcher.Dispatcher
	dreg *prometheus.Registry
	recv *hooks
}

type systemOption func(*systemOptions)

type systemOptions struct{ noRouter bool }

// withoutRouter leaves the router to the test (a child process, say).
func withoutRouter(o *systemOptions) { o.noRouter = true }

func startSystem(t *testing.T, opts ...systemOption) *system {
	t.Helper()
	var o systemOptions
	for _, f := range opts {
		f(&o)
	}
	kc := testenv.Kafka(t)
	_, db := testenv.ClickHouse(t)
	s := &system{t: t, kc: kc, db: db, recv: newHooks(t)}
	s.an = &analytics.Config{Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(), ClickHouseDatabase: db, OpsListen: "127.0.0.1:0",
		BatchInterval: 100 * time.Millisecond}
	eps := &endpoint.Config{Dev: true}
	delivery := &dispatcher.ClientConfig{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := analytics.New(*s.an, log.With("component", "analytics"), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s.dreg = ops.NewRegistry()
	s.d, err = dispatcher.New(dispatcher.Config{Kafka: kc, Endpoints: eps, Delivery: delivery, OpsListen: "127.0.0.1:0",
		Group: kc.TopicPrefix + ".dispatcher", CommitInterval: 100 * time.Millisecond,
		RetrySchedule: dispatcher.Schedule{time.Second, time.Second, time.Second, time.Second}}, log.With("component", "dispatcher"), s.dreg)
	if err != nil {
		t.Fatal(err)
	}
	comps := []component{a, s.d}
	if !o.noRouter {
		comps = append(comps, s.startRouter(log))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range comps {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c.Stop(ctx) //nolint:errcheck
		})
	}
	s.g = startAPI(t, testConfig(kc, receiverConfig, func(c *Config) { c.History = s.an }))
	return s
}

// waitRouted waits until the routers' group committed every event of
// <p>.events published so far.
func (s *system) waitRouted() {
	s.t.Helper()
	cl := s.kc.Client()
	topic := s.kc.Topic(schemas.TopicEvents)
	testenv.Eventually(s.t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		first, last, err := broker.Offsets(ctx, cl, topic)
		if err != nil {
			return err
		}
		parts := make([]int, 0, len(last))
		for p := range last {
			parts = append(parts, p)
		}
		resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.kc.Topic("router"), Topics: map[string][]int{topic: parts}})
		if err != nil {
			return err
		}
		for _, p := range resp.Topics[topic] {
			if last[p.Partition] > first[p.Partition] && p.CommittedOffset < last[p.Partition] {
				return fmt.Errorf("partition %d routed up to %d of %d", p.Partition, p.CommittedOffset, last[p.Partition])
			}
		}
		return nil
	})
}

type component interface {
	Start(context.Context) error
	Stop(context.Context) error
}

// routerConfig is the router of the system's topics and delivery log.
func routerConfig(kc *broker.Config, an *analytics.Config) router.Config {
	return router.Config{Kafka: kc, Endpoints: &endpoint.Config{Dev: true}, History: an, OpsListen: "127.0.0.1:0",
		CommitInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second, DisableAfter: -1}
}

func (s *system) startRouter(log *slog.Logger) *router.Router {
	s.t.Helper()
	r, err := router.New(routerConfig(s.kc, s.an), log.With("component", "router"), ops.NewRegistry())
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// endpoint creates an endpoint of account A at the receiver's path,
// subscribed to events; it returns its id and secret.
func (s *system) endpoint(path string, events ...string) (string, string) {
	s.t.Helper()
	c := create(s.t, s.g, keyA, fmt.Sprintf(`{"url": %q, "events": [%s]}`, s.recv.url+path, `"`+strings.Join(events, `","`)+`"`))
	return c["id"].(string), c["secret"].(string)
}

// publish posts events of account A in batches of up to 1,000; each is
// {"type": typ, "data": {"n": i}} for i from first.
func (s *system) publish(typ string, first, n int, extra string) []string {
	s.t.Helper()
	var ids []string
	for lo := first; lo < first+n; lo += 1000 {
		hi := min(lo+1000, first+n)
		items := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			items = append(items, fmt.Sprintf(`{"id":"ev_%s_%d","type":%q,"account_id":"acct_a","data":{"n":%d%s}}`, strings.ReplaceAll(typ, ".", "_"), i, typ, i, extra))
			ids = append(ids, fmt.Sprintf("ev_%s_%d", strings.ReplaceAll(typ, ".", "_"), i))
		}
		r := call(s.t, s.g, svcKey, "POST", "/v1/events/batch", `{"events":[`+strings.Join(items, ",")+`]}`)
		want(s.t, r, 202, "")
	}
	return ids
}

// deliveries reads the endpoint's delivery history with query (e.g.
// "status=failed") until check accepts the first page and its total.
func (s *system) deliveries(id, query string, timeout time.Duration, check func(rows []any, total int) error) []any {
	s.t.Helper()
	var rows []any
	testenv.Eventually(s.t, timeout, func() error {
		r := call(s.t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/deliveries?per_page=100&"+query, "")
		if r.status != 200 {
			return fmt.Errorf("deliveries: %d %s", r.status, r.body)
		}
		rows = r.list()
		total := int(r.v["pagination"].(map[string]any)["total"].(float64))
		return check(rows, total)
	})
	return rows
}

// totalIs is a check of deliveries: the total is n.
func totalIs(n int) func([]any, int) error {
	return func(_ []any, total int) error {
		if total != n {
			return fmt.Errorf("%d deliveries, want %d", total, n)
		}
		return nil
	}
}

// job polls the job until it has ended and returns it.
func (s *system) job(endpointID, jobID string, timeout time.Duration) map[string]any {
	s.t.Helper()
	var j map[string]any
	testenv.Eventually(s.t, timeout, func() error {
		r := call(s.t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+endpointID+"/jobs/"+jobID, "")
		want(s.t, r, 200, "")
		j = r.data()
		switch j["status"] {
		case "completed", "failed", "cancelled":
			return nil
		}
		return fmt.Errorf("job %s: %s", j["status"], r.body)
	})
	return j
}

// arrival is one request the receiver got.
type arrival struct {
	path, delivery, event string
	body                  []byte
	header                http.Header
	at                    time.Time
}

// hooks is the test receiver: per path a status to answer (200 unless
// set; set it with answer), and every request it got.
type hooks struct {
	url string
	mu  sync.Mutex
	got []arrival
	ans map[string]func(*http.Request, []byte) (int, http.Header)
}

func newHooks(t *testing.T) *hooks {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hooks{url: "http://" + ln.Addr().String(), ans: map[string]func(*http.Request, []byte) (int, http.Header){}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, arrival{path: r.URL.Path, delivery: r.Header.Get("X-Zaits-Delivery"), event: eventIDOf(body), body: body, header: r.Header.Clone(), at: time.Now()})
		f := h.ans[r.URL.Path]
		h.mu.Unlock()
		status, hdr := 200, http.Header(nil)
		if f != nil {
			status, hdr = f(r, body)
		}
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, http.StatusText(status))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

// answer sets how path answers.
func (h *hooks) answer(path string, status int) {
	h.answerWith(path, func(*http.Request, []byte) (int, http.Header) { return status, nil })
}

func (h *hooks) answerWith(path string, f func(*http.Request, []byte) (int, http.Header)) {
	h.mu.Lock()
	h.ans[path] = f
	h.mu.Unlock()
}

// at returns the requests path got.
func (h *hooks) at(path string) []arrival {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []arrival
	for _, a := range h.got {
		if a.path == path {
			out = append(out, a)
		}
	}
	return out
}

// eventIDOf reads "id" from a payload {"id": …}.
func eventIDOf(body []byte) string {
	s := string(body)
	i := strings.Index(s, `"id":"`)
	if i < 0 {
		return ""
	}
	s = s[i+6:]
	if j := strings.IndexByte(s, '"'); j >= 0 {
		return s[:j]
	}
	return ""
}

// metric returns the value of a series line "name{labels} value" of a
// registry, or -1.
func metric(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			if name == series {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
