package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/schemas"
)

// RecoveryEventType is the type of the events the recovery scenario fails,
// recovers and replays; the live traffic is EventType, so neither reaches
// the other's endpoints.
const RecoveryEventType = "ocr.completed"

// RecoveryConfig configures the recovery scenario. RegisterFlags sets the documented defaults.
type RecoveryConfig struct {
	// Events is N: the events that fail at one endpoint and are then
	// recovered, and replayed to a fresh one. Default 100,000.
	Events int
	// Endpoints is the live traffic's endpoints (every live event goes to all). Default 10.
	Endpoints int
	// Rate is the live traffic's events per second. Default 50.
	Rate float64
	// JobRate is the rate (tasks/s) the recover and replay jobs ask for. Default 2000.
	JobRate int
	// JobsMaxRate is the system's -router.jobs-max-rate: all jobs of a
	// router together, and any one of them, at most. Default 2000 (the router's default).
	JobsMaxRate int
	// RetrySchedule is the system's retry schedule, so that N deliveries
	// fail (5 attempts each) within minutes. Default "1s,1s,1s,1s".
	RetrySchedule string
	// BatchSize is the events per publish request of the N. Default 500.
	BatchSize int
	// Drain is how long the waits (the live traffic's last deliveries, the
	// failing attempts, a job's deliveries) go on without progress. Default 15s.
	Drain time.Duration
	// Limit bounds the failing stage and each job with its deliveries. Default 30m.
	Limit time.Duration
}

// RegisterFlags registers the recovery.* flags.
func (c *RecoveryConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Events, "recovery.events", 100_000, "events (N) that fail at one endpoint, are recovered there, and are replayed to a fresh endpoint")
	fs.IntVar(&c.Endpoints, "recovery.endpoints", 10, "endpoints of the live traffic (each live event goes to all of them)")
	fs.Float64Var(&c.Rate, "recovery.rate", 50, "live events published per second")
	fs.IntVar(&c.JobRate, "recovery.job-rate", 2000, "rate (tasks/s) the recover and replay jobs ask for (the job's \"rate\")")
	fs.IntVar(&c.JobsMaxRate, "recovery.jobs-max-rate", 2000, "the system's -router.jobs-max-rate for the run (all jobs of the router together)")
	fs.StringVar(&c.RetrySchedule, "recovery.retry-schedule", "1s,1s,1s,1s", "the system's retry schedule for the run (-dispatcher.retry-schedule), so N deliveries fail within minutes")
	fs.IntVar(&c.BatchSize, "recovery.batch-size", 500, "events per publish request of the N")
	fs.DurationVar(&c.Drain, "recovery.drain", 15*time.Second, "give up a wait (live deliveries, failing attempts, a job's deliveries) after this long without progress")
	fs.DurationVar(&c.Limit, "recovery.limit", 30*time.Minute, "bound of the failing stage and of each job with its deliveries")
}

// Validate reports every problem at once.
func (c *RecoveryConfig) Validate() error {
	var errs []error
	if c.Events < 1 || c.Events >= receiver.MaxSeq {
		errs = append(errs, fmt.Errorf("recovery.events: must be 1..%d, got %d", receiver.MaxSeq-1, c.Events))
	}
	if c.Endpoints < 1 || c.Endpoints > 10_000 {
		errs = append(errs, fmt.Errorf("recovery.endpoints: must be 1..10000, got %d", c.Endpoints))
	}
	if c.JobRate < 1 || c.JobRate > gateway.MaxJobRate {
		errs = append(errs, fmt.Errorf("recovery.job-rate: must be 1..%d (the API's bound), got %d", gateway.MaxJobRate, c.JobRate))
	}
	if c.JobsMaxRate < 1 || c.JobsMaxRate > 100_000 {
		errs = append(errs, fmt.Errorf("recovery.jobs-max-rate: must be 1..100000, got %d", c.JobsMaxRate))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("recovery.batch-size: must be 1..1000, got %d", c.BatchSize))
	}
	if c.Rate <= 0 || c.Drain <= 0 || c.Limit <= 0 {
		errs = append(errs, errors.New("recovery.rate, recovery.drain and recovery.limit: must be positive"))
	}
	if strings.Count(c.RetrySchedule, ",") != Attempts-2 {
		errs = append(errs, fmt.Errorf("recovery.retry-schedule: want %d waits, got %q", Attempts-1, c.RetrySchedule))
	}
	return errors.Join(errs...)
}

// effectiveRate is what the router runs a job at: its rate within the router's.
func (c *RecoveryConfig) effectiveRate() int { return min(c.JobRate, c.JobsMaxRate) }

// perEndpointGuess is a rough attempts/s of one endpoint (one attempt in
// flight) on a small machine, for the estimate only.
const perEndpointGuess = 1500

// Recovery measures the recovery jobs beside live traffic, in one run on
// one private system: live traffic alone; N deliveries failed at one
// endpoint and recovered there with POST …/recover while the same live
// traffic runs; N events replayed with POST …/replay to an endpoint created
// after them (backfill) while it runs again. It reports recovered and
// replayed deliveries/s, the live traffic's publish→receipt p50/p99 in all
// three, the jobs' counts and the receiver's checks.
func Recovery(cfg *RecoveryConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "recovery",
		About: "N deliveries fail at one endpoint, then POST …/recover re-sends them, and POST …/replay backfills the same N events to an endpoint created after them, each beside live traffic: recovered and replayed deliveries/s and the live traffic's publish→receipt p50/p99 next to live traffic alone, in the same run.",
		Estimate: func(sc *suite.Config) time.Duration {
			n := time.Duration(cfg.Events)
			job := n * time.Second / time.Duration(min(cfg.effectiveRate(), perEndpointGuess))
			live := sc.Warmup + cfg.Drain/2 + 5*time.Second
			failing := Attempts*n*time.Second/perEndpointGuess + 10*time.Second
			return live + sc.Duration + failing + 2*(live+job) + 30*time.Second
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			target, stop, err := env.System(ctx, "-dispatcher.retry-schedule="+cfg.RetrySchedule, fmt.Sprintf("-router.jobs-max-rate=%d", cfg.JobsMaxRate))
			if err != nil {
				return nil, fmt.Errorf("system: %w", err)
			}
			defer stop()
			if !target.Started {
				return nil, errors.New("the recovery scenario needs the retry schedule scaled to seconds and its own -router.jobs-max-rate, so it starts its own system: run it with -bench.system=start")
			}
			r := &recoveryRun{cfg: cfg, env: env, t: target, res: &suite.Result{}}
			err = r.run(ctx)
			return r.res, err
		},
	}
}

// recoveryRun is one run of the recovery scenario.
type recoveryRun struct {
	cfg      *RecoveryConfig
	env      *suite.Env
	t        *suite.Target
	res      *suite.Result
	problems []string
	// since and until bound the acceptance of the N events (whole seconds).
	since, until time.Time
}

func (r *recoveryRun) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// live is the live traffic's plan; phase names the run.
func (r *recoveryRun) live(phase string) deliveryPlan {
	c := r.cfg
	return deliveryPlan{
		name:      fmt.Sprintf("live %s (%d × %s/s)", phase, c.Endpoints, load.Thousands(c.Rate)), // short: chart legends clip at 42 characters
		endpoints: c.Endpoints, rate: c.Rate, batch: max(1, int(c.Rate/20)), drain: c.Drain, limit: c.Limit,
	}
}

func (r *recoveryRun) run(ctx context.Context) error {
	c, res := r.cfg, r.res
	n := int64(c.Events)

	// 1. Live traffic alone.
	alone, err := deliver(ctx, r.env, r.t, r.live("alone"))
	if alone == nil {
		return err
	}
	res.Runs = append(res.Runs, alone)
	r.checkLive(alone, err)

	// 2. N deliveries fail at one endpoint; then it answers 200 and a
	// recover job re-sends them beside the live traffic.
	rec, closeRec, err := startReceiver(receiver.Config{})
	if err != nil {
		return err
	}
	defer closeRec()
	failing, err := r.endpoint(ctx, rec, "recover")
	if err != nil {
		return err
	}
	if err := rec.SetBehaviour("recover", receiver.Behaviour{Status: 500}); err != nil {
		return err
	}
	failStart := time.Now()
	if err := r.publishN(ctx); err != nil {
		return err
	}
	published := time.Since(failStart)
	failedTook, err := r.waitFailed(ctx, rec, failing)
	if err != nil {
		return err
	}
	failedTook += published
	attempts := rec.Report().Endpoints["recover"].Attempts
	if attempts != Attempts*n {
		r.problem("the failing endpoint answered 500 to %d attempts for %d events, want exactly %d each", attempts, n, Attempts)
	}
	r.env.Log.Info("every delivery failed", "events", n, "attempts", attempts, "took", failedTook.Round(time.Second))
	if err := rec.SetBehaviour("recover", receiver.Behaviour{}); err != nil {
		return err
	}
	recoverBody, _ := json.Marshal(map[string]any{"since": r.since.Format(time.RFC3339), "until": r.until.Format(time.RFC3339), "rate": c.JobRate})
	recovered := &jobRun{rcv: rec, name: "recover", endpointID: failing, path: "/recover", body: recoverBody, n: n}
	plan := r.live("+ recover")
	plan.alongside = func(ctx context.Context) error { return recovered.run(ctx, r) }
	during, err := deliver(ctx, r.env, r.t, plan)
	if during == nil {
		return errors.Join(err, recovered.err())
	}
	recovered.final(ctx, r)
	res.Runs = append(res.Runs, during, recovered.measurement(r, fmt.Sprintf("recover %s failed", load.Thousands(float64(n))), "POST …/recover → router job → dispatcher → receiver"))
	r.checkLive(during, jobless(err, recovered))
	r.checkJob(recovered, n)
	// The delivery log agrees: none failed any more, all N succeeded.
	for _, w := range []struct {
		status string
		want   int64
	}{{"failed", 0}, {"success", n}} {
		got, werr := r.waitTotal(ctx, failing, w.status, w.want)
		if werr != nil {
			r.problem("after the recover, the delivery log lists %d deliveries %s, want %d (%v)", got, w.status, w.want, werr)
		}
	}

	// 3. The same N events replayed to an endpoint created after them
	// (backfill), beside the live traffic.
	fresh, closeFresh, err := startReceiver(receiver.Config{})
	if err != nil {
		return err
	}
	defer closeFresh()
	backfill, err := r.endpoint(ctx, fresh, "backfill")
	if err != nil {
		return err
	}
	replayBody, _ := json.Marshal(map[string]any{"since": r.since.Format(time.RFC3339), "until": r.until.Format(time.RFC3339), "rate": c.JobRate})
	replayed := &jobRun{rcv: fresh, name: "backfill", endpointID: backfill, path: "/replay", body: replayBody, n: n}
	plan = r.live("+ replay")
	plan.alongside = func(ctx context.Context) error { return replayed.run(ctx, r) }
	duringReplay, err := deliver(ctx, r.env, r.t, plan)
	if duringReplay == nil {
		return errors.Join(err, replayed.err())
	}
	replayed.final(ctx, r)
	res.Runs = append(res.Runs, duringReplay, replayed.measurement(r, fmt.Sprintf("backfill replay %s", load.Thousands(float64(n))), "POST …/replay → router job → dispatcher → receiver"))
	r.checkLive(duringReplay, jobless(err, replayed))
	r.checkJob(replayed, n)

	r.report(alone, during, duringReplay, recovered, replayed, failedTook, attempts)
	if len(r.problems) > 0 {
		return errors.New(strings.Join(r.problems, "; "))
	}
	return nil
}

// report writes the headline and the notes.
func (r *recoveryRun) report(alone, during, duringReplay *suite.Measurement, recovered, replayed *jobRun, failedTook time.Duration, attempts int64) {
	c, res, n := r.cfg, r.res, float64(r.cfg.Events)
	ms := func(us int64) float64 { return float64(us) / 1000 }
	counts := func(j *jobRun) string {
		k := j.state.Counts
		return fmt.Sprintf("(scanned %s, matched %s, skipped %s; job %s)", load.Thousands(float64(k.Scanned)), load.Thousands(float64(k.Matched)), load.Thousands(float64(k.Skipped)), j.state.Status)
	}
	res.Headline = []suite.Metric{
		{Name: "live alone: publish→receipt p50", Value: ms(alone.ReceiverLatency.P50), Unit: "ms"},
		{Name: "live alone: publish→receipt p99", Value: ms(alone.ReceiverLatency.P99), Unit: "ms"},
		{Name: fmt.Sprintf("%s deliveries failed (5 attempts each, at one endpoint)", load.Thousands(n)), Value: failedTook.Seconds(), Unit: fmt.Sprintf("s (%s attempts, %s attempts/s)", load.Thousands(float64(attempts)), load.Thousands(float64(attempts)/failedTook.Seconds()))},
		{Name: "recovered (recover job's start → receiver has all N)", Value: recovered.perSecond(), Unit: fmt.Sprintf("deliveries/s (%s in %.1f s)", load.Thousands(float64(recovered.delivered)), recovered.took.Seconds())},
		{Name: "live during the recover: publish→receipt p50", Value: ms(during.ReceiverLatency.P50), Unit: "ms"},
		{Name: "live during the recover: publish→receipt p99", Value: ms(during.ReceiverLatency.P99), Unit: "ms"},
		{Name: "recover job: sent", Value: float64(recovered.state.Counts.Sent), Unit: counts(recovered)},
		{Name: "replayed to a new endpoint (replay job's start → receiver has all N)", Value: replayed.perSecond(), Unit: fmt.Sprintf("deliveries/s (%s in %.1f s)", load.Thousands(float64(replayed.delivered)), replayed.took.Seconds())},
		{Name: "live during the replay: publish→receipt p50", Value: ms(duringReplay.ReceiverLatency.P50), Unit: "ms"},
		{Name: "live during the replay: publish→receipt p99", Value: ms(duringReplay.ReceiverLatency.P99), Unit: "ms"},
		{Name: "replay job: sent", Value: float64(replayed.state.Counts.Sent), Unit: counts(replayed)},
	}
	var losses, sig, order, dups int64
	for _, m := range r.res.Runs {
		rp := m.Receiver
		losses += rp.Losses
		sig += rp.SignatureFailures + rp.Malformed
		order += rp.OrderViolations
		dups += rp.Duplicates
	}
	res.Headline = append(res.Headline,
		suite.Metric{Name: "losses (expect 0)", Value: float64(losses)},
		suite.Metric{Name: "signature failures (expect 0)", Value: float64(sig)},
		suite.Metric{Name: "order violations (expect 0)", Value: float64(order)},
		suite.Metric{Name: "duplicates (counted)", Value: float64(dups)})
	res.Notes = append(res.Notes,
		"Measured on a private zaits started for this scenario: `zaits "+strings.Join(r.t.Args, " ")+"`",
		"CPU per 1,000 deliveries: the live runs beside a job and the job's own run overlap, and each divides all the processes' CPU in its window by its own deliveries only, so both include the other's work; the live-alone run is the clean figure for the live traffic.",
		fmt.Sprintf("Jobs: each asks for `\"rate\": %d`; the system runs with `-router.jobs-max-rate=%d` (all jobs of the router together, and any one of them), so they run at %d tasks/s at most. The router's defaults are -router.job-rate=500 (a job that asks for no rate) and -router.jobs-max-rate=2000.", c.JobRate, c.JobsMaxRate, c.effectiveRate()),
		fmt.Sprintf("Live traffic: %d endpoints, %s %s events/s (each to all of them), published in batches of %d by one publisher; its publish→receipt latency is over the events published in each run's measured window: the whole job for the runs beside a job (the window ends when the receiver has all N).", c.Endpoints, load.Thousands(c.Rate), EventType, max(1, int(c.Rate/20))),
		fmt.Sprintf("The N = %s events are %s, published over HTTP in batches of %d between %s and %s (the jobs' window) to one endpoint answering 500; `-dispatcher.retry-schedule=%s` makes each fail 5 times within seconds. The failing stage ends when the receiver counted 5 attempts of each and `GET …/deliveries?status=failed` lists N; then the endpoint answers 200.", load.Thousands(n), RecoveryEventType, c.BatchSize, r.since.Format(time.RFC3339), r.until.Format(time.RFC3339), c.RetrySchedule),
		"Recovered and replayed deliveries/s run from the POST of the job to the moment the receiver had verified all N (one endpoint: the dispatcher keeps one attempt in flight per endpoint, so one endpoint's round trip bounds it too). The job rows' to-receipt latency is from that POST to each delivery's arrival.",
		"The replay backfills an endpoint created after the N events (subscribed to their type only): the router reads the account's partition of <p>.events over the window, skips the live events in it, and delivers the N in event order with the delivery ids a live delivery would have had, which the receiver checks.",
		fmt.Sprintf("Recover job %s: started %s, finished %s; replay job %s: started %s, finished %s (the API's whole seconds).", recovered.state.ID, stamp(recovered.state.StartedAt), stamp(recovered.state.FinishedAt), replayed.state.ID, stamp(replayed.state.StartedAt), stamp(replayed.state.FinishedAt)),
		"Duplicates: a delivery id answered 200 twice at one endpoint (at-least-once); none are expected here, and they are counted, not failed.")
}

func stamp(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format(time.RFC3339)
}

// checkLive notes a live run's faults.
func (r *recoveryRun) checkLive(m *suite.Measurement, err error) {
	if rp := m.Receiver; rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Losses > 0 {
		r.problem("%s: %d signature failures, %d malformed, %d order violations, %d losses", m.Name, rp.SignatureFailures, rp.Malformed, rp.OrderViolations, rp.Losses)
	}
	if err != nil {
		r.problem("%s: %v", m.Name, err)
	}
}

// checkJob notes a job's faults: not completed, counts other than N, and
// what its receiver saw.
func (r *recoveryRun) checkJob(j *jobRun, n int64) {
	if err := j.err(); err != nil {
		r.problem("%s job: %v", j.name, err)
	}
	k := j.state.Counts
	if j.state.Status != schemas.JobCompleted || k.Matched != n || k.Sent != n || k.Skipped != 0 || k.Scanned < n {
		r.problem("%s job %s: status %s, counts scanned %d, matched %d, sent %d, skipped %d; want completed with %d matched and sent", j.name, j.state.ID, j.state.Status, k.Scanned, k.Matched, k.Sent, k.Skipped, n)
	}
	rp := j.report
	if rp.Delivered != n || rp.Losses+rp.SignatureFailures+rp.Malformed+rp.OrderViolations+rp.Unexpected > 0 {
		r.problem("%s endpoint: delivered %d of %d, %d losses, %d signature failures, %d malformed, %d order violations, %d unexpected",
			j.name, rp.Delivered, n, rp.Losses, rp.SignatureFailures, rp.Malformed, rp.OrderViolations, rp.Unexpected)
	}
}

// endpoint creates the endpoint name at rcv, subscribed to
// RecoveryEventType, registers it there and returns its id; it is deleted
// when the scenario's system stops with it.
func (r *recoveryRun) endpoint(ctx context.Context, rcv *receiver.Receiver, name string) (string, error) {
	ep, err := createEndpoint(ctx, r.t, rcv.URL(name), "zaits-bench recovery", []string{RecoveryEventType})
	if err != nil {
		return "", err
	}
	rcv.Register(receiver.Endpoint{Name: name, ID: ep.ID, Secrets: []string{ep.Secret}})
	return ep.ID, nil
}

// publishN publishes the N events (sequence 0..N-1, one publisher, so
// acceptance order is sequence order) and notes the window they were
// accepted in.
func (r *recoveryRun) publishN(ctx context.Context) error {
	pub := &publisher{target: r.t, run: RunID(), eventType: RecoveryEventType, client: &fasthttp.Client{
		MaxConnsPerHost: 2, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second, MaxResponseBodySize: 4 << 20, MaxIdemponentCallAttempts: 1,
	}}
	r.since = time.Now().UTC().Truncate(time.Second)
	n := int64(r.cfg.Events)
	for from := int64(0); from < n; from += int64(r.cfg.BatchSize) {
		seqs := make([]int64, min(int64(r.cfg.BatchSize), n-from))
		for i := range seqs {
			seqs[i] = from + int64(i)
		}
		accepted, err := pub.publish(ctx, seqs)
		if err != nil || len(accepted) != len(seqs) {
			return fmt.Errorf("publishing the %d events: batch at %d: %d of %d accepted: %w", n, from, len(accepted), len(seqs), err)
		}
		if r.env.Progress != nil && from%int64(20*r.cfg.BatchSize) == 0 {
			fmt.Fprintf(r.env.Progress, "\rrecovery: published %s of %s events", load.Thousands(float64(from+int64(len(seqs)))), load.Thousands(float64(n)))
		}
	}
	if r.env.Progress != nil {
		fmt.Fprintln(r.env.Progress)
	}
	// Accepted before now: the window's end is the next whole second.
	r.until = time.Now().UTC().Truncate(time.Second).Add(time.Second)
	return nil
}

// waitFailed waits until the endpoint answered 500 to every attempt of the
// N and the delivery log lists all of them failed, and returns how long it took.
func (r *recoveryRun) waitFailed(ctx context.Context, rcv *receiver.Receiver, id string) (time.Duration, error) {
	start := time.Now()
	n := int64(r.cfg.Events)
	var failed int64
	var asked time.Time
	var lastErr error
	done := func() bool {
		// Requests is cheap; the endpoint is the receiver's only one.
		if rcv.Requests() < Attempts*n || time.Since(asked) < 500*time.Millisecond {
			return false
		}
		asked = time.Now()
		failed, lastErr = r.deliveryTotal(ctx, id, "failed")
		return lastErr == nil && failed == n
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Limit)
	defer cancel()
	if !drainUntil(ctx, r.cfg.Drain, r.cfg.Limit, func() int64 { return rcv.Requests() + failed }, done) {
		er := rcv.Report().Endpoints["recover"]
		return 0, fmt.Errorf("the failing stage did not end: %d of %d attempts answered 500, the delivery log lists %d of %d failed (%v) after %s",
			er.Attempts, Attempts*n, failed, n, lastErr, time.Since(start).Round(time.Second))
	}
	return time.Since(start), nil
}

// waitTotal waits (up to a drain) until the endpoint's deliveries of status
// number want, and returns the last count.
func (r *recoveryRun) waitTotal(ctx context.Context, id, status string, want int64) (int64, error) {
	var got int64
	var err error
	ok := waitFor(ctx, 4*r.cfg.Drain, func() bool {
		got, err = r.deliveryTotal(ctx, id, status)
		if err == nil && got == want {
			return true
		}
		time.Sleep(450 * time.Millisecond)
		return false
	})
	if !ok && err == nil {
		err = fmt.Errorf("not within %s", 4*r.cfg.Drain)
	}
	return got, err
}

// deliveryTotal is the number of the endpoint's deliveries with status
// (GET …/deliveries?status=…, its pagination total).
func (r *recoveryRun) deliveryTotal(ctx context.Context, id, status string) (int64, error) {
	code, body, err := manage(ctx, r.t, fasthttp.MethodGet, "/v1/webhooks/endpoints/"+id+"/deliveries?per_page=1&status="+status, nil)
	if err != nil {
		return 0, err
	}
	if code != fasthttp.StatusOK {
		return 0, fmt.Errorf("deliveries: status %d: %s", code, clip(body, 300))
	}
	var env struct {
		Pagination struct {
			Total int64 `json:"total"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return 0, fmt.Errorf("deliveries: %w", err)
	}
	return env.Pagination.Total, nil
}

// jobState is the part of a job's API view the scenario reads.
type jobState struct {
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	Counts     schemas.JobCounts `json:"counts"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	Error      *string           `json:"error"`
}

func (s jobState) finished() bool {
	return s.Status == schemas.JobCompleted || s.Status == schemas.JobFailed || s.Status == schemas.JobCancelled
}

// jobRun is one recovery job and the wait for its N deliveries at rcv.
type jobRun struct {
	rcv        *receiver.Receiver
	name       string // the endpoint's receiver name
	endpointID string
	path       string // "/recover" or "/replay"
	body       []byte
	n          int64

	state     jobState
	started   time.Time // the job's POST
	took      time.Duration
	delivered int64
	report    receiver.Report
	timeline  *timeline
	failure   error
}

func (j *jobRun) err() error { return j.failure }

// jobless is a live run's error without the job's own (checkJob notes that).
func jobless(err error, j *jobRun) error {
	if err != nil && err == j.failure {
		return nil
	}
	return err
}

func (j *jobRun) perSecond() float64 {
	if j.took <= 0 {
		return 0
	}
	return float64(j.delivered) / j.took.Seconds()
}

// run expects the N at the receiver, creates the job, and waits until the
// receiver has all N (or nothing arrived for a drain after the job ended).
func (j *jobRun) run(ctx context.Context, r *recoveryRun) error {
	j.failure = j.wait(ctx, r)
	j.report = j.rcv.Report()
	j.delivered = j.report.Endpoints[j.name].Delivered
	return j.failure
}

func (j *jobRun) wait(ctx context.Context, r *recoveryRun) error {
	procs := r.env.Processes(ctx, r.t)
	j.started = time.Now()
	for seq := range j.n {
		if err := j.rcv.Expect(j.name, seq, j.started); err != nil {
			return err
		}
	}
	// Drawn on the live run's time axis: this starts at the end of its warm-up.
	warm := r.env.Config.Warmup
	j.timeline = newTimeline(j.rcv, procs, j.started.Add(-warm), warm)
	defer func() {
		j.timeline.stop()
		if j.took == 0 {
			j.took = time.Since(j.started)
		}
	}()
	code, body, err := manage(ctx, r.t, fasthttp.MethodPost, "/v1/webhooks/endpoints/"+j.endpointID+j.path, j.body)
	if err != nil {
		return fmt.Errorf("POST %s: %w", j.path, err)
	}
	var env struct {
		Data jobState `json:"data"`
	}
	if code != fasthttp.StatusAccepted || json.Unmarshal(body, &env) != nil || env.Data.ID == "" {
		return fmt.Errorf("POST %s: status %d: %s", j.path, code, clip(body, 300))
	}
	j.state = env.Data
	r.env.Log.Info("job created", "job", j.state.ID, "path", j.path, "events", j.n)
	var asked, finishedAt time.Time
	lastDelivered, lastMove := j.rcv.Delivered(), time.Now()
	for {
		if j.rcv.Outstanding() == 0 {
			j.took = time.Since(j.started)
			break
		}
		now := time.Now()
		if d := j.rcv.Delivered(); d != lastDelivered {
			lastDelivered, lastMove = d, now
		}
		if now.Sub(asked) >= 500*time.Millisecond {
			asked = now
			if s, err := j.get(ctx, r); err == nil {
				j.state = s
				if s.finished() && finishedAt.IsZero() {
					finishedAt = now
				}
			}
			if j.state.Status == schemas.JobFailed || j.state.Status == schemas.JobCancelled {
				return fmt.Errorf("job %s %s: %s", j.state.ID, j.state.Status, deref(j.state.Error))
			}
		}
		if !finishedAt.IsZero() && now.Sub(lastMove) > r.cfg.Drain && now.Sub(finishedAt) > r.cfg.Drain {
			return fmt.Errorf("job %s completed but the receiver got %d of %d deliveries, none for %s", j.state.ID, j.rcv.Delivered(), j.n, r.cfg.Drain)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %s (%s, sent %d): the receiver had %d of %d deliveries when the wait ended: %w", j.state.ID, j.state.Status, j.state.Counts.Sent, j.rcv.Delivered(), j.n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// final waits for the job's final state once the receiver has all N (it
// records its end within about a second of its last task).
func (j *jobRun) final(ctx context.Context, r *recoveryRun) {
	if j.state.ID == "" {
		return
	}
	waitFor(ctx, 4*r.cfg.Drain, func() bool {
		if s, err := j.get(ctx, r); err == nil {
			j.state = s
		}
		if j.state.finished() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// get reads the job (GET …/jobs/{job_id}).
func (j *jobRun) get(ctx context.Context, r *recoveryRun) (jobState, error) {
	code, body, err := manage(ctx, r.t, fasthttp.MethodGet, "/v1/webhooks/endpoints/"+j.endpointID+"/jobs/"+j.state.ID, nil)
	if err != nil {
		return jobState{}, err
	}
	var env struct {
		Data jobState `json:"data"`
	}
	if code != fasthttp.StatusOK || json.Unmarshal(body, &env) != nil {
		return jobState{}, fmt.Errorf("GET job: status %d: %s", code, clip(body, 300))
	}
	return env.Data, nil
}

// measurement is the job as a run of the report: N deliveries from the
// job's POST to the last one, its deliveries per second over time, and the
// receiver's checks of its endpoint.
func (j *jobRun) measurement(r *recoveryRun, name, path string) *suite.Measurement {
	s := &load.Stats{
		Name: name, Mode: "job", Concurrency: 1, TargetRate: float64(r.cfg.effectiveRate()),
		Warmup: r.env.Config.Warmup, Duration: j.took, Ops: j.state.Counts.Sent, Units: j.delivered,
	}
	if j.timeline != nil {
		s.Timeline = j.timeline.samples
	}
	rep := j.report
	m := suite.NewMeasurement(s, "deliveries", path, &rep)
	if j.timeline != nil && j.took > 0 {
		m.CPU = j.timeline.cpuBetween(j.started, j.started.Add(j.took))
	}
	return m
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
