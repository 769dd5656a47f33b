package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.yaml.in/yaml/v2"

	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// mustFire are the alerts the test's traffic provokes for real: their whole
// expression, threshold included, must return a series. The others are
// checked through their signals only (a backlog of minutes or a stalled
// group is not something a test of two minutes produces honestly).
var mustFire = map[string]string{
	"ZaitsDeliveryFailureRateHigh":  "a receiver that answers 500 to half of the endpoints",
	"ZaitsDeadLetterRateHigh":       "those endpoints' deliveries exhaust a 1s,1s,1s,1s schedule",
	"ZaitsClickHouseInsertsFailing": "the test cuts analytics' connection to ClickHouse",
	"ZaitsComponentDown":            "the test stops zaits at the end",
}

// TestAlertsAndDashboardOnARunningSystem starts `zaits all -dev` against the
// shared Kafka and ClickHouse and a real Prometheus (Debian's package)
// scraping its ops ports with deploy/prometheus/alerts.yml loaded, drives
// traffic that exercises every metric (successes, retries through every
// tier, dead letters, rejected and quarantined events, a ClickHouse outage,
// finally the system stopping), and requires every dashboard query and
// every alert signal to return a series, every rule to evaluate without
// error, and the alerts in mustFire to fire.
func TestAlertsAndDashboardOnARunningSystem(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("no prometheus binary on PATH (%v): install it with `deploy/check.sh install` (make deploy-check)", err)
	}
	alertsPath, err := filepath.Abs(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := readAlerts(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	for name := range mustFire {
		if !slices.ContainsFunc(alerts, func(a alertRule) bool { return a.Name == name }) {
			t.Fatalf("mustFire names %s, which alerts.yml does not have", name)
		}
	}
	dashboards, _ := filepath.Glob(filepath.Join("grafana", "dashboards", "*.json"))
	var panels []panelQuery
	for _, d := range dashboards {
		qs, err := readDashboard(d)
		if err != nil {
			t.Fatal(err)
		}
		panels = append(panels, qs...)
	}
	jobs := composeJobs(t)
	dir := t.TempDir()

	// The binary under test.
	bin := filepath.Join(dir, "zaits")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/zaits/webhooks/cmd/zaits").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/zaits: %v\n%s", err, out)
	}

	// Servers, receivers, the system.
	kcfg := testenv.Kafka(t)
	_, db := testenv.ClickHouse(t)
	chProxy := startProxy(t, testenv.ClickHouseAddr())
	var okHits, failHits atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/fail") {
			failHits.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		okHits.Add(1)
	}))
	t.Cleanup(recv.Close)

	token, tokenEntry, err := gateway.MintKey("deploycheck", true)
	if err != nil {
		t.Fatal(err)
	}
	const account = "acct_deploycheck"
	key, keyEntry, err := gateway.MintKey(account, false)
	if err != nil {
		t.Fatal(err)
	}
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	ops := map[string]string{"gateway": addr(), "router": addr(), "dispatcher": addr(), "analytics": addr()}
	api := addr()
	args := []string{"all", "-dev", "-log.format=json", "-log.level=warn",
		"-kafka.brokers=" + kcfg.Brokers, "-kafka.topic-prefix=" + kcfg.TopicPrefix,
		"-dispatcher.group=" + kcfg.TopicPrefix + ".dispatcher",
		"-clickhouse.addr=" + chProxy.Addr(), "-clickhouse.database=" + db,
		"-gateway.listen=" + api,
		"-gateway.ops-listen=" + ops["gateway"], "-router.ops-listen=" + ops["router"],
		"-dispatcher.ops-listen=" + ops["dispatcher"], "-analytics.ops-listen=" + ops["analytics"],
		"-gateway.api-keys=" + keyEntry, "-gateway.service-tokens=" + tokenEntry,
		"-delivery.allow-networks=127.0.0.0/8",
		"-dispatcher.retry-schedule=1s,1s,1s,1s",
		"-analytics.batch-interval=250ms",
	}
	for name, n := range kcfg.Partitions {
		args = append(args, fmt.Sprintf("-kafka.partitions.%s=%d", name, n))
	}
	zlog, err := os.Create(filepath.Join(dir, "zaits.log"))
	if err != nil {
		t.Fatal(err)
	}
	sys := exec.Command(bin, args...)
	sys.Stdout, sys.Stderr = zlog, zlog
	if err := sys.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = sys.Wait(); close(exited) }()
	stopSystem := sync.OnceFunc(func() {
		_ = sys.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = sys.Process.Kill()
			<-exited
		}
	})
	t.Cleanup(func() {
		stopSystem()
		if t.Failed() {
			t.Logf("zaits log (last 4 KiB):\n%s", tail(filepath.Join(dir, "zaits.log"), 4096))
		}
	})
	testenv.Eventually(t, 90*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("zaits exited before it was ready:\n%s", tail(filepath.Join(dir, "zaits.log"), 4096))
		default:
		}
		for c, a := range ops {
			if err := get("http://" + a + "/readyz"); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
		}
		return nil
	})

	// Prometheus: the compose file's job names, each on its component's ops port here.
	promAddr := addr()
	var scrape strings.Builder
	for _, job := range jobs {
		target, ok := ops[strings.TrimPrefix(job, "zaits-")]
		if !ok {
			t.Logf("job %s: no ops port in this zaits (its metrics come from another component)", job)
			continue
		}
		fmt.Fprintf(&scrape, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", job, target)
	}
	promCfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %s\nscrape_configs:\n%s", alertsPath, scrape.String())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	plog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"), "--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = plog, plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	promExited := make(chan struct{})
	go func() { _ = prom.Wait(); close(promExited) }()
	t.Cleanup(func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		select {
		case <-promExited:
		case <-time.After(15 * time.Second):
			_ = prom.Process.Kill()
			<-promExited
		}
		if t.Failed() {
			t.Logf("prometheus log (last 2 KiB):\n%s", tail(filepath.Join(dir, "prometheus.log"), 2048))
		}
	})
	pq := &promClient{base: "http://" + promAddr}
	testenv.Eventually(t, 30*time.Second, func() error { return get(pq.base + "/-/ready") })

	// Traffic: an endpoint that succeeds and one that always fails, events
	// over HTTP and straight into Kafka, one invalid of each.
	gw := apiClient{base: "http://" + api, key: key, token: token}
	gw.createEndpoint(t, recv.URL+"/ok", "document.signed")
	gw.createEndpoint(t, recv.URL+"/fail", "document.signed")
	if code := gw.publish(`{"type":"no.such.type","account_id":"` + account + `","data":{}}`); code != http.StatusBadRequest {
		t.Fatalf("an event of an unknown type answered %d, want 400", code)
	}
	w := kcfg.NewWriter(kcfg.Topic(schemas.TopicEvents), 5*time.Millisecond)
	t.Cleanup(func() { w.Close() })
	produce := func(value string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(account), Value: []byte(value)}); err != nil {
			t.Errorf("produce to %s: %v", w.Topic, err)
		}
	}
	produce("not json")
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	trafficDone := make(chan struct{})
	var published atomic.Int64
	go func() {
		defer close(trafficDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 1500; i++ { // at most 5 minutes
			select {
			case <-trafficCtx.Done():
				return
			case <-tick.C:
			}
			ev := fmt.Sprintf(`{"type":"document.signed","account_id":%q,"data":{"n":%d}}`, account, i)
			if i%4 == 3 {
				produce(ev)
			} else if code := gw.publish(ev); code != http.StatusAccepted {
				t.Errorf("publish: %d", code)
				return
			}
			published.Add(1)
		}
	}()
	t.Cleanup(func() { stopTraffic(); <-trafficDone })

	// Phase 1: every query has a series, every rule evaluates cleanly.
	queries := map[string]string{} // description → expression as sent
	add := func(what, expr string) { queries[what] = expr }
	for _, p := range panels {
		e, err := expandGrafana(p.Expr)
		if err != nil {
			t.Fatalf("panel %q %s: %v", p.Panel, p.RefID, err)
		}
		add(fmt.Sprintf("panel %q query %s", p.Panel, p.RefID), e)
	}
	for _, a := range alerts {
		sigs, join, err := signals(a.Expr)
		if err != nil {
			t.Fatalf("alert %s: %v", a.Name, err)
		}
		for i, s := range sigs {
			add(fmt.Sprintf("alert %s signal %d", a.Name, i+1), s)
		}
		if join != "" {
			add(fmt.Sprintf("alert %s signals match each other", a.Name), join)
		}
		if why, ok := mustFire[a.Name]; ok && a.Name != "ZaitsClickHouseInsertsFailing" && a.Name != "ZaitsComponentDown" {
			add(fmt.Sprintf("alert %s firing (%s)", a.Name, why), a.Expr)
		}
	}
	began := time.Now()
	pq.allHaveSeries(t, 3*time.Minute, queries)
	t.Logf("phase 1: %d queries have series %s after Prometheus started (%d events published, receiver: %d ok, %d failed requests)",
		len(queries), time.Since(began).Round(time.Second), published.Load(), okHits.Load(), failHits.Load())
	pq.rulesHealthy(t, len(alerts))

	// Phase 2: ClickHouse becomes unreachable for analytics.
	chProxy.Cut()
	cut := time.Now()
	pq.allHaveSeries(t, 2*time.Minute, map[string]string{"alert ZaitsClickHouseInsertsFailing firing": exprOf(alerts, "ZaitsClickHouseInsertsFailing")})
	t.Logf("phase 2: ZaitsClickHouseInsertsFailing fires %s after the cut", time.Since(cut).Round(time.Second))

	// Phase 3: the system stops; every scraped job reports down.
	stopTraffic()
	<-trafficDone
	stopSystem()
	stopped := time.Now()
	down := exprOf(alerts, "ZaitsComponentDown")
	testenv.Eventually(t, 30*time.Second, throttle(time.Second, func() error {
		n, err := pq.count(down)
		if err != nil {
			return err
		}
		if n != len(ops) {
			return fmt.Errorf("%s returns %d series, want one per scraped component (%d)", down, n, len(ops))
		}
		return nil
	}))
	t.Logf("phase 3: ZaitsComponentDown fires for all %d components %s after zaits stopped", len(ops), time.Since(stopped).Round(time.Second))
}

func exprOf(alerts []alertRule, name string) string {
	for _, a := range alerts {
		if a.Name == name {
			return a.Expr
		}
	}
	return ""
}

// composeJobs returns the zaits job names of deploy/prometheus/prometheus.yml.
func composeJobs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, s := range cfg.ScrapeConfigs {
		if strings.HasPrefix(s.JobName, "zaits-") {
			jobs = append(jobs, s.JobName)
		}
	}
	want := []string{"zaits-analytics", "zaits-dispatcher", "zaits-gateway", "zaits-router"}
	sorted := append([]string(nil), jobs...)
	sort.Strings(sorted)
	if strings.Join(sorted, ",") != strings.Join(want, ",") {
		t.Fatalf("prometheus.yml scrapes %v, want one job per component %v", jobs, want)
	}
	return jobs
}

// throttle runs f at most once per interval, answering its last error in between
// (testenv.Eventually polls every 20 ms; a round of Prometheus queries is heavier).
func throttle(interval time.Duration, f func() error) func() error {
	var last time.Time
	lastErr := errors.New("not run yet")
	return func() error {
		if time.Since(last) < interval {
			return lastErr
		}
		last = time.Now()
		lastErr = f()
		return lastErr
	}
}

func get(u string) error {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

func tail(path string, n int64) string {
	b, _ := os.ReadFile(path)
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// apiClient talks to the gateway's public API.
type apiClient struct{ base, key, token string }

func (c apiClient) do(method, path, bearer, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	hc := http.Client{Timeout: 15 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c apiClient) createEndpoint(t *testing.T, url, eventType string) {
	t.Helper()
	body := fmt.Sprintf(`{"url":%q,"events":[%q],"description":"deploy check"}`, url, eventType)
	code, answer, err := c.do(http.MethodPost, "/v1/webhooks/endpoints", c.key, body)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create endpoint %s: %d %v %s", url, code, err, answer)
	}
}

// publish posts one event with the service token and returns the status (0 on a transport error).
func (c apiClient) publish(event string) int {
	code, _, err := c.do(http.MethodPost, "/v1/events", c.token, event)
	if err != nil {
		return 0
	}
	return code
}

// promClient queries Prometheus' HTTP API.
type promClient struct{ base string }

// count returns how many series expr returns now.
func (p *promClient) count(expr string) (int, error) {
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("query %s: %w", expr, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 0, fmt.Errorf("query %s: a %s, not an instant vector", expr, r.Data.ResultType)
	}
	return len(r.Data.Result), nil
}

// allHaveSeries waits until every query returns at least one series and
// fails naming those that still do not.
func (p *promClient) allHaveSeries(t *testing.T, timeout time.Duration, queries map[string]string) {
	t.Helper()
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	sort.Strings(names)
	done := map[string]bool{}
	testenv.Eventually(t, timeout, throttle(time.Second, func() error {
		var missing []string
		for _, n := range names {
			if done[n] {
				continue
			}
			c, err := p.count(queries[n])
			if err != nil {
				t.Fatalf("%s: %v", n, err) // a query Prometheus refuses is wrong for good
			}
			if c == 0 {
				missing = append(missing, fmt.Sprintf("%s: %s", n, queries[n]))
				continue
			}
			done[n] = true
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d queries return no series:\n  %s", len(missing), len(names), strings.Join(missing, "\n  "))
		}
		return nil
	}))
}

// rulesHealthy requires Prometheus to have loaded n alerting rules and to
// have evaluated each without error (a many-to-many match, for example).
func (p *promClient) rulesHealthy(t *testing.T, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, throttle(time.Second, func() error {
		resp, err := http.Get(p.base + "/api/v1/rules?type=alert")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		seen := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				seen++
				if rule.Health == "err" {
					t.Fatalf("rule %s fails to evaluate: %s", rule.Name, rule.LastError)
				}
				if rule.Health != "ok" {
					return fmt.Errorf("rule %s: health %q", rule.Name, rule.Health)
				}
			}
		}
		if seen != n {
			return fmt.Errorf("Prometheus has %d alerting rules loaded, alerts.yml %d", seen, n)
		}
		return nil
	}))
}

// proxy forwards TCP connections to a target until Cut, which closes the
// listener and every open connection (a server that became unreachable).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	cut    bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(p.Cut)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *proxy) forward(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.target, 3*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// Cut makes the target unreachable through the proxy from now on.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
}
