package scenario_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// config returns a suite configuration with short runs and defaults for the rest.
func config(t *testing.T, kc *broker.Config) *suite.Config {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg := &suite.Config{Kafka: kc}
	cfg.RegisterFlags(fs)
	cfg.ResultsDir = t.TempDir()
	cfg.Warmup, cfg.Duration, cfg.Progress = 200*time.Millisecond, time.Second, false
	cfg.System = "running"
	return cfg
}

func defaultKafka() *broker.Config {
	kc := &broker.Config{}
	kc.RegisterFlags(flag.NewFlagSet("k", flag.ContinueOnError))
	kc.Brokers = testenv.KafkaAddr()
	return kc
}

func ingestConfig(kc *broker.Config, paths string) *scenario.IngestConfig {
	ic := &scenario.IngestConfig{Kafka: kc}
	ic.RegisterFlags(flag.NewFlagSet("i", flag.ContinueOnError))
	ic.Paths, ic.Concurrency, ic.OpenConcurrency = paths, 4, 8
	ic.SingleRate, ic.BatchRate, ic.KafkaRate = 200, 2000, 2000
	return ic
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func run(t *testing.T, cfg *suite.Config, s suite.Scenario) (*suite.Suite, *suite.Result) {
	t.Helper()
	su, err := suite.Run(context.Background(), cfg, []suite.Scenario{s}, map[string]string{"x": "y"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return su, su.Results[0]
}

func TestCeilingWritesAFaultFreeReport(t *testing.T) {
	cfg := config(t, defaultKafka())
	cc := &scenario.CeilingConfig{}
	cc.RegisterFlags(flag.NewFlagSet("c", flag.ContinueOnError))
	cc.Endpoints, cc.Concurrency = 8, 4
	su, res := run(t, cfg, scenario.Ceiling(cc))
	if res.Status != "ok" || len(res.Runs) != 2 {
		t.Fatalf("status %s (%s), %d runs: want ok with a closed and an open loop run", res.Status, res.Reason, len(res.Runs))
	}
	closed, open := res.Runs[0], res.Runs[1]
	if closed.Mode != "closed" || open.Mode != "open" || closed.Units == 0 || open.Units == 0 {
		t.Fatalf("runs %s/%d, %s/%d: want closed and open loop deliveries", closed.Mode, closed.Units, open.Mode, open.Units)
	}
	if want := closed.UnitsPerSecond / 2; open.TargetRate < want*0.99 || open.TargetRate > want*1.01 {
		t.Errorf("open loop target %.0f/s, want half the closed-loop maximum %.0f/s", open.TargetRate, want)
	}
	for _, m := range res.Runs {
		rp := m.Receiver
		if rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Duplicates+rp.Losses+rp.Unexpected != 0 {
			t.Errorf("%s: receiver faults %+v on the bare client's deliveries", m.Name, rp)
		}
		if rp.Delivered < m.Units || m.ReceiverLatency.Count != rp.Delivered {
			t.Errorf("%s: receiver delivered %d (latency samples %d), client counted %d measured", m.Name, rp.Delivered, m.ReceiverLatency.Count, m.Units)
		}
	}
	for _, m := range res.Runs {
		// No system here: zaits is absent, not zero; the bench did the work.
		if m.CPU == nil || m.CPU.Deliveries != m.Units {
			t.Fatalf("%s: CPU report %+v, want one over the %d measured deliveries", m.Name, m.CPU, m.Units)
		}
		if z := cpuOf(t, m, "zaits"); z.Absent != "no system in this scenario" || z.Seconds != nil {
			t.Errorf("%s: zaits %+v, want absent", m.Name, z)
		}
		if b := cpuOf(t, m, "bench"); b.Absent != "" || *b.Seconds <= 0 || *b.PerThousand <= 0 || *b.Cores <= 0 {
			t.Errorf("%s: bench %+v, want CPU > 0", m.Name, b)
		}
	}
	for _, f := range []string{"report.md", "results.json", "throughput-ceiling.svg", "latency-ceiling.svg", "ceiling-ratio.svg"} {
		b, err := os.ReadFile(filepath.Join(su.Dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
	}
	report, _ := os.ReadFile(filepath.Join(su.Dir, "report.md"))
	for _, want := range []string{"ceiling (closed loop)", "| cores | ", "| Kafka | ", "| ClickHouse | ", "| git commit | ", "![latency](latency-ceiling.svg)",
		"CPU seconds per 1,000 deliveries", "| run | deliveries | window | zaits | kafka | clickhouse | bench |", "Absent: zaits: no system in this scenario."} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	var back suite.Suite
	raw, _ := os.ReadFile(filepath.Join(su.Dir, "results.json"))
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Results) != 1 || back.Results[0].Runs[0].Units != closed.Units {
		t.Errorf("results.json does not round-trip: %v", err)
	}
}

// cpuOf is the named process's CPU in run m.
func cpuOf(t *testing.T, m *suite.Measurement, name string) suite.ProcessCPU {
	t.Helper()
	if m.CPU != nil {
		for _, p := range m.CPU.Processes {
			if p.Process == name {
				return p
			}
		}
	}
	t.Fatalf("%s: no CPU figure for %s in %+v", m.Name, name, m.CPU)
	return suite.ProcessCPU{}
}

// gateway is a stand-in for the ingest API on a loopback port: it checks
// the token and each event, and answers like issue 5 describes.
type gateway struct {
	addr     string
	status   int // forced answer; 0 = 202
	accepted atomic.Int64
	bad      atomic.Int64
}

func startGateway(t *testing.T, status int) *gateway {
	t.Helper()
	g := &gateway{status: status}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: g.handle}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return g
}

func (g *gateway) handle(ctx *fasthttp.RequestCtx) {
	if g.status != 0 {
		ctx.Error(`{"success":false}`, g.status)
		return
	}
	if string(ctx.Request.Header.Peek("Authorization")) != "Bearer tok" {
		ctx.Error(`{"success":false}`, 401)
		return
	}
	check := func(ev schemas.Event) bool {
		return ev.AccountID == "acct_bench" && ev.Type == scenario.EventType && strings.HasPrefix(ev.ID, "evt_") && json.Valid(ev.Data)
	}
	switch string(ctx.Path()) {
	case "/v1/events":
		var ev schemas.Event
		if json.Unmarshal(ctx.PostBody(), &ev) != nil || !check(ev) {
			g.bad.Add(1)
			ctx.Error("bad event", 400)
			return
		}
		g.accepted.Add(1)
		ctx.SetStatusCode(202)
	case "/v1/events/batch":
		var b struct{ Events []schemas.Event }
		if json.Unmarshal(ctx.PostBody(), &b) != nil {
			g.bad.Add(1)
			ctx.Error("bad batch", 400)
			return
		}
		// The first item of every batch is rejected (207), to prove partial acceptance is honoured.
		out := fmt.Appendf(nil, `{"success":true,"data":{"accepted":%d,"rejected":1,"results":[{"index":0,"status":"rejected","error":{"code":"validation_error"}}`, len(b.Events)-1)
		for i, ev := range b.Events[1:] {
			if !check(ev) {
				g.bad.Add(1)
			}
			g.accepted.Add(1)
			out = fmt.Appendf(out, `,{"index":%d,"status":"accepted","id":%q}`, i+1, ev.ID)
		}
		ctx.SetStatusCode(207)
		ctx.SetBody(append(out, "]}}"...))
	default:
		ctx.Error("not found", 404)
	}
}

func TestIngestHTTP(t *testing.T) {
	g := startGateway(t, 0)
	cfg := config(t, defaultKafka())
	cfg.GatewayURL, cfg.Token = "http://"+g.addr, "tok"
	ic := ingestConfig(cfg.Kafka, "http-single,http-batch")
	ic.BatchSize = 10
	_, res := run(t, cfg, scenario.Ingest(ic))
	if res.Status != "ok" || len(res.Runs) != 4 {
		t.Fatalf("status %s (%s), %d runs, notes %v: want ok with 4 runs", res.Status, res.Reason, len(res.Runs), res.Notes)
	}
	var units int64
	for _, m := range res.Runs {
		if m.Units == 0 || m.Errors != 0 {
			t.Errorf("%s: %d events, %d errors (%s)", m.Name, m.Units, m.Errors, m.FirstError)
		}
		if strings.Contains(m.Path, "batch") && m.Units%9 != 0 {
			t.Errorf("%s: %d events accepted, want 9 per batch of 10 (the gateway rejects one item each)", m.Name, m.Units)
		}
		units += m.Units
	}
	if g.bad.Load() != 0 || units > g.accepted.Load() {
		t.Errorf("gateway saw %d bad events and accepted %d; the bench claims %d measured", g.bad.Load(), g.accepted.Load(), units)
	}
	if open := res.Runs[1]; open.Mode != "open" || open.TargetRate != 200 {
		t.Errorf("single open loop: mode %s, target %.0f req/s, want open at 200", open.Mode, open.TargetRate)
	}
	if open := res.Runs[3]; open.TargetRate != 200 {
		t.Errorf("batch open loop: target %.0f req/s, want 2000 events/s / 10 per batch = 200", open.TargetRate)
	}
}

func TestIngestHTTPSaysWhyItCannotRun(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	f := func(url, token, want string) {
		t.Helper()
		cfg := config(t, defaultKafka())
		cfg.GatewayURL, cfg.Token = url, "tok"
		if token != "" {
			cfg.Token = "wrong"
		}
		_, res := run(t, cfg, scenario.Ingest(ingestConfig(cfg.Kafka, "http-single")))
		if res.Status != "skipped" || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], want) {
			t.Errorf("%s: status %s, notes %v: want skipped saying %q", url, res.Status, res.Notes, want)
		}
	}
	f("http://"+deadAddr, "", "unreachable")
	f("http://"+startGateway(t, 404).addr, "", "not deployed")
	f("http://"+startGateway(t, 0).addr, "wrong", "rejected the token")
}

func TestIngestKafka(t *testing.T) {
	kc := testenv.Kafka(t)
	cfg := config(t, kc)
	ic := ingestConfig(kc, "kafka")
	ic.KafkaTopicPrefix = kc.TopicPrefix
	_, res := run(t, cfg, scenario.Ingest(ic))
	if res.Status != "ok" || len(res.Runs) != 2 {
		t.Fatalf("status %s (%s), %d runs", res.Status, res.Reason, len(res.Runs))
	}
	var units int64
	for _, m := range res.Runs {
		if m.Units == 0 || m.Errors != 0 {
			t.Fatalf("%s: %d events, %d errors (%s)", m.Name, m.Units, m.Errors, m.FirstError)
		}
		units += m.Units
	}
	topic := kc.Topic(schemas.TopicEvents)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reqs []kafka.OffsetRequest
	for p := range kc.Partitions[schemas.TopicEvents] {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	offs, err := kc.Client().ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, po := range offs.Topics[topic] {
		stored += po.LastOffset
	}
	if stored < units {
		t.Errorf("%s holds %d messages, fewer than the %d the bench counted as accepted", topic, stored, units)
	}
	// All keyed by account, so one partition holds them all; its first message is a valid event.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.BrokerList(), Topic: topic, Partition: partitionOf(offs.Topics[topic]), MaxWait: time.Second})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ev schemas.Event
	if err := json.Unmarshal(m.Value, &ev); err != nil || string(m.Key) != "acct_bench" || ev.AccountID != "acct_bench" || ev.Type != scenario.EventType {
		t.Errorf("message key %q value %s (%v): want an event of acct_bench keyed by it", m.Key, m.Value, err)
	}
}

func partitionOf(pos []kafka.PartitionOffsets) int {
	for _, po := range pos {
		if po.LastOffset > 0 {
			return po.Partition
		}
	}
	return 0
}
