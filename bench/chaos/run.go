// Package chaos runs the chaos matrix against a private Zaits on the local
// 3-node Kafka cluster (make cluster): under load (R events/s over HTTP,
// each to N endpoints at a verifying loopback receiver), one fault at a
// time — a broker or the active controller killed with SIGKILL and kept
// down, a component process killed — and measures what the fault cost:
// accepted events lost, duplicates (and whether they share the delivery
// id), first-arrival order per endpoint, how long ingestion and delivery
// stalled, the latency during the failover and what /readyz said.
package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/schemas"
)

// Config configures the chaos runs. RegisterFlags sets the documented defaults.
type Config struct {
	// Cases is the comma-separated list of cases to run, in order. Default: all of them.
	Cases string
	// Repeat is how many times each case runs. Default 1.
	Repeat int
	// Endpoints is N: every event goes to all of them. Default 20.
	Endpoints int
	// Rate is R, events per second published over HTTP. Default 100.
	Rate float64
	// Warmup is the load before the fault. Default 20s.
	Warmup time.Duration
	// Down is how long a killed broker stays down (load goes on). Default 60s.
	Down time.Duration
	// After is the load after the broker is back. Default 20s.
	After time.Duration
	// Drain is how long the wait for the last deliveries after publishing
	// stops goes on without progress (at most 5× in all). Default 60s.
	Drain time.Duration
	// Target is the availability target: ingestion and delivery must resume
	// within it of the fault, while the broker is still down. Default 15s.
	Target time.Duration
	// Zaits is the binary to run. Default .state/bin/zaits.
	Zaits string
	// Script is deploy/local/kafka.sh.
	Script string
	// ClickHouseScript is deploy/local/clickhouse.sh: a private ClickHouse
	// is started with it for the runs (the clickhouse case stops it).
	ClickHouseScript string
	// ResultsDir is where <time>-chaos/ is written. Default bench/results.
	ResultsDir string
	// Flags are extra flags for zaits (comma-separated).
	Flags string
}

// RegisterFlags registers the chaos.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Cases, "chaos.cases", "broker,coordinator,controller,dispatcher,router,gateway,analytics,clickhouse", "comma-separated cases to run: "+strings.Join(caseNames(), ", "))
	fs.IntVar(&c.Repeat, "chaos.repeat", 1, "runs of each case")
	fs.IntVar(&c.Endpoints, "chaos.endpoints", 20, "endpoints at the receiver; every event goes to all of them")
	fs.Float64Var(&c.Rate, "chaos.rate", 100, "events per second published over HTTP")
	fs.DurationVar(&c.Warmup, "chaos.warmup", 20*time.Second, "load before the fault")
	fs.DurationVar(&c.Down, "chaos.down", 60*time.Second, "how long a killed broker stays down while the load goes on")
	fs.DurationVar(&c.After, "chaos.after", 20*time.Second, "load after the broker is back")
	fs.DurationVar(&c.Drain, "chaos.drain", 60*time.Second, "after publishing stops, wait for the last deliveries until none arrived for this long (at most 5× in all)")
	fs.DurationVar(&c.Target, "chaos.target", 15*time.Second, "ingestion and delivery must resume within this of the fault")
	fs.StringVar(&c.Zaits, "chaos.zaits-bin", ".state/bin/zaits", "the zaits binary")
	fs.StringVar(&c.Script, "chaos.kafka-script", "deploy/local/kafka.sh", "the script that controls the 3-node cluster")
	fs.StringVar(&c.ClickHouseScript, "chaos.clickhouse-script", "deploy/local/clickhouse.sh", "the script that starts the runs' private ClickHouse")
	fs.StringVar(&c.ResultsDir, "chaos.results-dir", "bench/results", "folder under which <time>-chaos/ is written")
	fs.StringVar(&c.Flags, "chaos.zaits-flags", "", "extra comma-separated flags for zaits")
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	for _, n := range c.caseList() {
		if findCase(n) == nil {
			errs = append(errs, fmt.Errorf("chaos.cases: unknown case %q (known: %s)", n, strings.Join(caseNames(), ", ")))
		}
	}
	if c.Repeat < 1 || c.Endpoints < 1 || c.Rate <= 0 {
		errs = append(errs, errors.New("chaos.repeat, chaos.endpoints and chaos.rate must be positive"))
	}
	if c.Warmup <= 0 || c.Down <= 0 || c.After < 0 || c.Drain <= 0 || c.Target <= 0 {
		errs = append(errs, errors.New("chaos.warmup, chaos.down, chaos.drain and chaos.target must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Config) caseList() []string {
	var out []string
	for _, n := range strings.Split(c.Cases, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Case is one row of the chaos matrix.
type Case struct {
	Name  string
	About string
	// publishTo orders the gateways the publisher uses (it moves to the
	// next on a connection error); nil: in fleet order.
	publishTo func(f *fleet) []string
	// fault injects the fault and returns what it hit and how to undo it.
	fault func(ctx context.Context, r *runEnv) (victim string, restore func() error, err error)
}

var cases = []Case{
	{
		Name:  "broker",
		About: "kill -9 the broker leading most <p>.deliveries partitions; restart it after chaos.down",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			n, leaders, err := r.cluster.MostLeader(ctx, r.fleet.kafka.Topic(schemas.TopicDeliveries))
			if err != nil {
				return "", nil, err
			}
			return killNode(r, n, fmt.Sprintf("node %d (leads %d of the %d <p>.deliveries partitions)", n, leaders[n], total(leaders)))
		},
	},
	{
		Name:  "coordinator",
		About: "kill -9 the broker coordinating the dispatchers' consumer group (it leads partitions too); restart it after chaos.down",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			n, err := r.cluster.Coordinator(ctx, r.fleet.Prefix+".dispatcher")
			if err != nil {
				return "", nil, err
			}
			leaders, _ := r.cluster.Leaders(ctx, r.fleet.kafka.Topic(schemas.TopicDeliveries))
			return killNode(r, n, fmt.Sprintf("node %d (dispatcher group coordinator; leads %d of the %d <p>.deliveries partitions)", n, leaders[n], total(leaders)))
		},
	},
	{
		Name:  "controller",
		About: "kill -9 the node leading the KRaft controller quorum (also a broker); restart it after chaos.down",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			n, err := r.cluster.QuorumLeader()
			if err != nil {
				return "", nil, err
			}
			return killNode(r, n, fmt.Sprintf("node %d (active controller)", n))
		},
	},
	{
		Name:  "dispatcher",
		About: "kill -9 one of the two dispatchers; restart it after chaos.down",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			return killProc(ctx, r, "dispatcher-1", "dispatcher-1 of 2")
		},
	},
	{
		Name:      "router",
		About:     "kill -9 the gateway process (its router with it) that the publisher does not use, one of two; restart it after chaos.down (until `zaits router` exists)",
		publishTo: func(f *fleet) []string { g := f.gateways(); return []string{g[1], g[0]} },
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			return killProc(ctx, r, "gateway-1", "gateway-1 of 2 with its router (the publisher uses gateway-2)")
		},
	},
	{
		Name:  "gateway",
		About: "kill -9 the gateway the publisher uses (its router with it), one of two: the publisher retries on the other; restart it after chaos.down",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			return killProc(ctx, r, "gateway-1", "gateway-1 of 2 with its router (the publisher's first gateway)")
		},
	},
	{
		Name:  "analytics",
		About: "kill -9 analytics; restart it after chaos.down (the delivery history must be complete afterwards)",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			return killProc(ctx, r, "analytics-1", "analytics-1 (the only one)")
		},
	},
	{
		Name:  "clickhouse",
		About: "stop the (private) ClickHouse server for chaos.down, then start it again (the delivery history must be complete afterwards)",
		fault: func(ctx context.Context, r *runEnv) (string, func() error, error) {
			if err := r.clickhouse.Stop(); err != nil {
				return "", nil, err
			}
			return "ClickHouse " + r.clickhouse.Addr, r.clickhouse.Start, nil
		},
	},
}

func killNode(r *runEnv, n int, what string) (string, func() error, error) {
	dc, _ := r.cluster.Coordinator(context.Background(), r.fleet.Prefix+".dispatcher")
	rc, _ := r.cluster.Coordinator(context.Background(), r.fleet.Prefix+".router")
	what += fmt.Sprintf("; group coordinators: dispatcher node %d, router node %d", dc, rc)
	if err := r.cluster.Kill(n); err != nil {
		return "", nil, err
	}
	return what, func() error { return r.cluster.Start(n) }, nil
}

func killProc(ctx context.Context, r *runEnv, name, what string) (string, func() error, error) {
	p := r.fleet.named(name)
	if p == nil {
		return "", nil, fmt.Errorf("no process %s", name)
	}
	if err := r.fleet.kill(p); err != nil {
		return "", nil, err
	}
	return what, func() error { return r.fleet.restart(ctx, p) }, nil
}

func total(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func caseNames() []string {
	out := make([]string, len(cases))
	for i, c := range cases {
		out[i] = c.Name
	}
	return out
}

func findCase(name string) *Case {
	for i := range cases {
		if cases[i].Name == name {
			return &cases[i]
		}
	}
	return nil
}

// runEnv is what a fault can act on.
type runEnv struct {
	cluster    *Cluster
	clickhouse *ClickHouse
	fleet      *fleet
}

// Result is one run of one case.
type Result struct {
	Case   string `json:"case"`
	Run    int    `json:"run"`
	Victim string `json:"victim"`
	// FaultAt is when the fault was injected; RestoredAt when the victim was back (zero if never).
	FaultAt    time.Time `json:"fault_at"`
	RestoredAt time.Time `json:"restored_at,omitempty"`
	// Publishing.
	Events      int64 `json:"events_accepted"`
	Requests    int64 `json:"requests"`
	Unavailable int64 `json:"answers_503"`
	Partial     int64 `json:"answers_207"`
	ConnErrors  int64 `json:"connection_errors"`
	OtherErrors int64 `json:"other_errors"`
	// At the receiver.
	Expected          int64 `json:"deliveries_expected"`
	Delivered         int64 `json:"deliveries_distinct"`
	Losses            int64 `json:"deliveries_lost"`
	Duplicates        int64 `json:"duplicates_same_delivery_id"`
	DuplicatesOtherID int64 `json:"duplicates_other_delivery_id"`
	OrderViolations   int64 `json:"first_arrival_order_violations"`
	SignatureFailures int64 `json:"signature_failures"`
	// Stalls, measured from the fault while the victim was down.
	IngestionStall Stall `json:"ingestion_stall"`
	DeliveryStall  Stall `json:"delivery_stall"`
	// EndpointStall is the longest time one endpoint went without a first
	// arrival (its name in EndpointStallName), in seconds.
	EndpointStall     float64 `json:"endpoint_stall_seconds"`
	EndpointStallName string  `json:"endpoint_stall_endpoint"`
	// HistoryRows are the distinct successful deliveries in ClickHouse after
	// the drain; HistoryMissing the distinct deliveries without one.
	HistoryRows    int64 `json:"history_rows"`
	HistoryMissing int64 `json:"history_missing"`
	// Latency of the events due while the victim was down, publish→receipt.
	FailoverP50 float64 `json:"failover_p50_ms"`
	FailoverP99 float64 `json:"failover_p99_ms"`
	FailoverMax float64 `json:"failover_max_ms"`
	FailoverN   int     `json:"failover_deliveries"`
	// Timeline counts, per second from the start of the load (the fault at
	// FaultSecond), the events accepted and the first arrivals at the receiver.
	FaultSecond  int   `json:"fault_second"`
	AcceptedPerS []int `json:"accepted_per_second"`
	ArrivedPerS  []int `json:"arrived_per_second"`
	// Readyz holds each component's /readyz changes, times in seconds after the fault.
	Readyz map[string][]ReadyAt `json:"readyz"`
	// Problems lists what failed the run (losses, a stall beyond the target…).
	Problems []string `json:"problems,omitempty"`
	// Missing lists the sequence numbers accepted but not delivered everywhere (first 20 ranges).
	Missing []MissingRange `json:"missing,omitempty"`
	// DrainSeconds is how long the last deliveries took to arrive after publishing stopped.
	DrainSeconds float64 `json:"drain_seconds"`
	// Log is the zaits log file of the run.
	Log string `json:"log"`
}

// ReadyAt is a /readyz change relative to the fault.
type ReadyAt struct {
	T      float64 `json:"t"`
	Status int     `json:"status"`
	Body   string  `json:"body,omitempty"`
}

// Run runs every configured case Repeat times against a fresh fleet each
// and returns the results; dir is the results folder (created by the caller).
func Run(ctx context.Context, cfg *Config, cluster *Cluster, ch *ClickHouse, dir string, log *slog.Logger) ([]*Result, error) {
	var out []*Result
	for _, name := range cfg.caseList() {
		c := findCase(name)
		for i := 1; i <= cfg.Repeat; i++ {
			log.Info("chaos case", "case", c.Name, "run", i, "about", c.About)
			res, err := runCase(ctx, cfg, cluster, ch, c, i, dir, log.With("case", c.Name, "run", i))
			if res != nil {
				out = append(out, res)
				log.Info("chaos result", "case", c.Name, "run", i, "victim", res.Victim,
					"ingestion_resumed_s", round(res.IngestionStall.To), "delivery_resumed_s", round(res.DeliveryStall.To),
					"endpoint_stall_s", round(res.EndpointStall), "lost", res.Losses, "duplicates", res.Duplicates,
					"history_missing", res.HistoryMissing, "problems", res.Problems)
			}
			if err != nil {
				return out, fmt.Errorf("case %s run %d: %w", c.Name, i, err)
			}
		}
	}
	return out, nil
}

func round(f float64) float64 { return float64(int(f*10+0.5)) / 10 }

func runCase(ctx context.Context, cfg *Config, cluster *Cluster, ch *ClickHouse, c *Case, run int, dir string, log *slog.Logger) (*Result, error) {
	kcfg := &broker.Config{}
	kcfg.RegisterFlags(flag.NewFlagSet("chaos", flag.ContinueOnError))
	kcfg.Brokers = strings.Join(cluster.Brokers, ",")
	kcfg.ReplicationFactor = 3
	logPath := filepath.Join(dir, fmt.Sprintf("zaits-%s-%d.log", c.Name, run))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	started := time.Now()
	fl, err := startFleet(ctx, cfg.Zaits, kcfg, ch.Addr, 2, 2, logFile)
	if err != nil {
		return nil, fmt.Errorf("start zaits: %w", err)
	}
	defer func() {
		if err := fl.stop(); err != nil {
			log.Warn("stopping zaits", "err", err)
		}
	}()
	log.Info("fleet ready", "prefix", fl.Prefix, "took", time.Since(started).Round(time.Millisecond))
	env := &runEnv{cluster: cluster, clickhouse: ch, fleet: fl}

	rcv := receiver.New(receiver.Config{})
	if err := rcv.Start(); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rcv.Close(sctx)
	}()
	gateways := fl.gateways()
	if c.publishTo != nil {
		gateways = c.publishTo(fl)
	}
	target := &suite.Target{GatewayURL: gateways[0], ServiceToken: fl.Token, APIKey: fl.APIKey, Account: fl.Account}
	runID := scenario.RunID()
	names := make([]string, cfg.Endpoints)
	for i := range names {
		names[i] = fmt.Sprintf("e%d", i)
		id, secret, err := createEndpoint(ctx, target, rcv.URL(names[i]), "zaits-chaos "+runID)
		if err != nil {
			return nil, err
		}
		rcv.Register(receiver.Endpoint{Name: names[i], ID: id, Secrets: []string{secret}})
	}

	// /readyz of every process, from the start of the load.
	rz := newReadyz()
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	for _, p := range fl.procs {
		watchers.Add(1)
		go func() { defer watchers.Done(); rz.watch(wctx, p.Name, p.Ops) }()
	}
	defer func() { stopWatch(); watchers.Wait() }()

	var expectErr error
	var expectMu sync.Mutex
	var events atomic.Int64
	var acceptedMu sync.Mutex
	var acceptedAt []time.Time
	pub := newPublisher(gateways, fl.Token, fl.Account, runID, cfg.Rate, func(seq int64, due time.Time) {
		events.Add(1)
		acceptedMu.Lock()
		acceptedAt = append(acceptedAt, time.Now())
		acceptedMu.Unlock()
		for _, n := range names {
			if err := rcv.Expect(n, seq, due); err != nil {
				expectMu.Lock()
				expectErr = err
				expectMu.Unlock()
			}
		}
	})
	pctx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	hard, stopHard := context.WithCancel(ctx)
	defer stopHard()
	pubDone := make(chan error, 1)
	loadStart := time.Now()
	go func() { pubDone <- pub.runUntil(pctx, hard) }()

	res := &Result{Case: c.Name, Run: run, Log: filepath.Base(logPath)}
	fail := func(err error) (*Result, error) {
		stopPublishing()
		stopHard()
		<-pubDone
		return res, err
	}
	if !sleep(ctx, cfg.Warmup) {
		return fail(ctx.Err())
	}
	if st := pub.stats(); len(st.Acks) == 0 {
		return fail(fmt.Errorf("no event accepted during the warm-up: %s", st.LastError))
	}
	victim, restore, err := c.fault(ctx, env)
	if err != nil {
		return fail(fmt.Errorf("fault: %w", err))
	}
	res.FaultAt, res.Victim = time.Now(), victim
	log.Info("fault injected", "victim", victim)
	if !sleep(ctx, cfg.Down) {
		return fail(ctx.Err())
	}
	downEnd := time.Now()
	if restore != nil {
		if err := restore(); err != nil {
			return fail(fmt.Errorf("restore: %w", err))
		}
		res.RestoredAt = time.Now()
		log.Info("restored", "victim", victim, "after", res.RestoredAt.Sub(res.FaultAt).Round(time.Millisecond))
	}
	if !sleep(ctx, cfg.After) {
		return fail(ctx.Err())
	}
	stopPublishing()
	// The events in flight are retried until accepted, for at most the drain.
	go func() { sleep(ctx, cfg.Drain); stopHard() }()
	if err := <-pubDone; err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	drainStart := time.Now()
	drained := drainUntil(ctx, cfg.Drain, 5*cfg.Drain, rcv.Outstanding)
	stopHard()
	res.DrainSeconds = round(time.Since(drainStart).Seconds())
	if !drained {
		log.Warn("deliveries still missing after the drain", "missing", rcv.Outstanding(), "took", time.Since(drainStart).Round(time.Second))
	}

	st := pub.stats()
	rp := rcv.Report()
	arrivals := rcv.Arrivals()
	res.Events, res.Requests, res.Unavailable, res.Partial, res.ConnErrors, res.OtherErrors = events.Load(), st.Requests, st.Unavailable, st.Partial, st.ConnErrors, st.OtherErrors
	res.Expected, res.Delivered, res.Losses = rp.Expected, rp.Delivered, rp.Losses
	res.Duplicates, res.DuplicatesOtherID, res.OrderViolations = rp.Duplicates, rp.DuplicatesOtherID, rp.OrderViolations
	res.SignatureFailures = rp.SignatureFailures + rp.Malformed
	res.IngestionStall = longestGap(st.Acks, res.FaultAt, downEnd)
	res.DeliveryStall = longestGap(firstArrivals(arrivals), res.FaultAt, downEnd)
	res.EndpointStall, res.EndpointStallName = longestEndpointGap(arrivals, res.FaultAt, downEnd)
	res.Missing = missingRanges(arrivals)
	acceptedMu.Lock()
	res.FaultSecond = int(res.FaultAt.Sub(loadStart) / time.Second)
	res.AcceptedPerS = perSecond(acceptedAt, loadStart, time.Now())
	acceptedMu.Unlock()
	res.ArrivedPerS = perSecond(firstArrivals(arrivals), loadStart, time.Now())
	res.FailoverP50, res.FailoverP99, res.FailoverMax, res.FailoverN = latencyDuring(arrivals, res.FaultAt, downEnd)
	// The delivery history: every distinct delivery has its success row.
	hctx, cancel := context.WithTimeout(ctx, 3*cfg.Drain)
	rows, herr := waitHistory(hctx, ch.Addr, fl.DB, fl.Account, rp.Delivered)
	cancel()
	res.HistoryRows, res.HistoryMissing = rows, max(rp.Delivered-rows, 0)
	if herr != nil {
		res.Problems = append(res.Problems, "delivery history: "+herr.Error())
	}
	stopWatch()
	watchers.Wait()
	res.Readyz = map[string][]ReadyAt{}
	for name, chs := range rz.snapshot() {
		for _, ch := range chs {
			res.Readyz[name] = append(res.Readyz[name], ReadyAt{T: round(ch.At.Sub(res.FaultAt).Seconds()), Status: ch.Status, Body: ch.Body})
		}
	}
	expectMu.Lock()
	if expectErr != nil {
		res.Problems = append(res.Problems, "receiver: "+expectErr.Error())
	}
	expectMu.Unlock()
	if res.Losses > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d accepted deliveries lost (none arrived for %s, %.0f s after publishing stopped)", res.Losses, cfg.Drain, res.DrainSeconds))
	}
	if res.HistoryMissing > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d deliveries missing from the delivery history", res.HistoryMissing))
	}
	if res.DuplicatesOtherID > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d duplicates under another delivery id", res.DuplicatesOtherID))
	}
	if res.OrderViolations > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d first arrivals out of order", res.OrderViolations))
	}
	if res.SignatureFailures > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d deliveries failed verification", res.SignatureFailures))
	}
	// A gap of up to stallFloor is not a stall (one slow batch); a longer one
	// must have ended within the target, also one that began later.
	tgt := cfg.Target.Seconds()
	for _, x := range []struct {
		what string
		s    Stall
	}{{"ingestion", res.IngestionStall}, {"delivery", res.DeliveryStall}} {
		switch {
		case !x.s.Resumed:
			res.Problems = append(res.Problems, fmt.Sprintf("%s did not resume while the victim was down (%.1f s without from %+.1f s)", x.what, x.s.Seconds, x.s.From))
		case x.s.Seconds > stallFloor && x.s.To > tgt:
			res.Problems = append(res.Problems, fmt.Sprintf("%s stalled %.1f s, until %.1f s after the fault (target %.0f s)", x.what, x.s.Seconds, x.s.To, tgt))
		}
	}
	return res, nil
}

// createEndpoint creates an endpoint, retrying for up to a minute: a
// gateway that just started may answer 503 for a moment, and a client retries.
func createEndpoint(ctx context.Context, t *suite.Target, url, description string) (id, secret string, err error) {
	deadline := time.Now().Add(time.Minute)
	for {
		if id, secret, err = scenario.CreateEndpoint(ctx, t, url, description); err == nil {
			return id, secret, nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			return "", "", err
		}
	}
}

// stallFloor is the longest gap that does not count as a stall.
const stallFloor = 2.0

// waitHistory polls ClickHouse until the account's successful deliveries
// (distinct delivery ids) number want, or ctx ends; it returns the count.
func waitHistory(ctx context.Context, addr, db, account string, want int64) (int64, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}, Protocol: clickhouse.Native, DialTimeout: 3 * time.Second})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var n uint64
	for {
		err = conn.QueryRow(ctx, "SELECT uniqExact(delivery_id) FROM attempts WHERE account_id = ? AND outcome = 'success'", account).Scan(&n)
		if err == nil && int64(n) >= want {
			return int64(n), nil
		}
		if !sleep(ctx, time.Second) {
			if err == nil {
				err = fmt.Errorf("%d of %d deliveries in the history after the drain", n, want)
			}
			return int64(n), err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// drainUntil polls outstanding every 100 ms until it is 0 (true), or it
// has not gone down for idle, or limit has passed (false): a backlog that
// is still being worked off is waited for, deliveries that never come are not.
func drainUntil(ctx context.Context, idle, limit time.Duration, outstanding func() int64) bool {
	start := time.Now()
	best, moved := outstanding(), start
	for best > 0 {
		if time.Since(moved) > idle || time.Since(start) > limit || !sleep(ctx, 100*time.Millisecond) {
			return false
		}
		if n := outstanding(); n < best {
			best, moved = n, time.Now()
		}
	}
	return true
}
