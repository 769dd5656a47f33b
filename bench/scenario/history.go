package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/suite"
)

// HistoryConfig configures the history scenario. RegisterFlags sets the documented defaults.
type HistoryConfig struct {
	// Rows is the attempt rows loaded into the delivery log. Default 2,000,000.
	Rows int
	// Endpoints is the number of endpoints the rows are spread over. Default 20.
	Endpoints int
	// Concurrency is the closed-loop workers per query. Default 4.
	Concurrency int
}

// RegisterFlags registers the history.* flags.
func (c *HistoryConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Rows, "history.rows", 2_000_000, "attempt rows loaded into the delivery log (two attempts per delivery)")
	fs.IntVar(&c.Endpoints, "history.endpoints", 20, "endpoints the rows are spread over")
	fs.IntVar(&c.Concurrency, "history.concurrency", 4, "closed-loop workers per query")
}

// Validate reports every problem at once.
func (c *HistoryConfig) Validate() error {
	var errs []error
	if c.Rows < 2 || c.Rows > 1_000_000_000 {
		errs = append(errs, fmt.Errorf("history.rows: must be 2..1e9, got %d", c.Rows))
	}
	if c.Endpoints < 1 || c.Endpoints > 1000 {
		errs = append(errs, fmt.Errorf("history.endpoints: must be 1..1000, got %d", c.Endpoints))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("history.concurrency: must be at least 1"))
	}
	return errors.Join(errs...)
}

// History loads a delivery log of Rows attempt rows into a private system's
// ClickHouse database and measures the three history reads of the API:
// the deliveries page, one delivery's detail and the endpoint stats.
func History(cfg *HistoryConfig) suite.Scenario {
	return suite.Scenario{
		Name:  "history",
		About: "Loads N attempt rows into the delivery log and measures the API's history reads through the gateway, closed loop: the deliveries page, the delivery detail and the stats (p50/p99).",
		Estimate: func(sc *suite.Config) time.Duration {
			return 3*(sc.Warmup+sc.Duration) + time.Duration(cfg.Rows/100_000)*time.Second + 15*time.Second
		},
		Run: func(ctx context.Context, env *suite.Env) (*suite.Result, error) {
			target, stop, err := env.System(ctx)
			if err != nil {
				return nil, fmt.Errorf("system: %w", err)
			}
			defer stop()
			if !target.Started || target.Database == "" {
				return nil, errors.New("the history scenario loads rows into the system's own database, so it starts its own system: run it with -bench.system=start")
			}
			ids := make([]string, cfg.Endpoints)
			for i := range ids {
				ep, err := createEndpoint(ctx, target, "http://127.0.0.1:9/hook/h"+strconv.Itoa(i), "zaits-bench history", []string{EventType})
				if err != nil {
					return nil, err
				}
				ids[i] = ep.ID
			}
			start := time.Now()
			if err := loadHistory(ctx, env.Config.ClickHouseAddr, target, ids, cfg.Rows); err != nil {
				return nil, err
			}
			loaded := time.Since(start)
			env.Log.Info("delivery log loaded", "rows", cfg.Rows, "took", loaded.Round(time.Millisecond))

			deliveries := cfg.Rows / 2
			client := &fasthttp.Client{MaxConnsPerHost: cfg.Concurrency, ReadTimeout: 30 * time.Second, MaxResponseBodySize: 8 << 20, MaxIdemponentCallAttempts: 1}
			get := func(path string) error {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI(target.GatewayURL + path)
				req.Header.Set("Authorization", "Bearer "+target.APIKey)
				if err := client.DoTimeout(req, resp, 30*time.Second); err != nil {
					return fmt.Errorf("GET %s: %w", path, err)
				}
				if resp.StatusCode() != fasthttp.StatusOK {
					return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode(), clip(resp.Body(), 200))
				}
				return nil
			}
			queries := []struct {
				name, path string
				op         func() string
			}{
				{"deliveries page", "GET …/deliveries?page=1&per_page=25", func() string {
					return "/v1/webhooks/endpoints/" + ids[rand.IntN(len(ids))] + "/deliveries?page=1&per_page=25"
				}},
				{"delivery detail", "GET …/deliveries/{delivery_id}", func() string {
					d := rand.IntN(deliveries)
					return "/v1/webhooks/endpoints/" + ids[d%len(ids)] + "/deliveries/" + historyDeliveryID(d)
				}},
				{"stats", "GET …/stats", func() string {
					return "/v1/webhooks/endpoints/" + ids[rand.IntN(len(ids))] + "/stats"
				}},
			}
			res := &suite.Result{}
			sc := env.Config
			for _, q := range queries {
				if err := get(q.op()); err != nil {
					return res, fmt.Errorf("%s: %w", q.name, err)
				}
				st, err := load.Run(ctx, load.Plan{Name: q.name, Concurrency: cfg.Concurrency, Warmup: sc.Warmup, Duration: sc.Duration, Progress: env.Progress, Unit: "queries"},
					func(context.Context, int, time.Time) (int, error) {
						if err := get(q.op()); err != nil {
							return 0, err
						}
						return 1, nil
					})
				if err != nil {
					return res, err
				}
				m := suite.NewMeasurement(st, "queries", q.path, nil)
				res.Runs = append(res.Runs, m)
				res.Headline = append(res.Headline,
					suite.Metric{Name: q.name + " p50", Value: float64(m.Latency.P50) / 1000, Unit: "ms"},
					suite.Metric{Name: q.name + " p99", Value: float64(m.Latency.P99) / 1000, Unit: "ms"})
				if st.Errors > 0 {
					return res, fmt.Errorf("%s: %d of %d queries failed, first: %s", q.name, st.Errors, st.Ops, st.FirstError)
				}
			}
			res.Notes = append(res.Notes,
				fmt.Sprintf("%s attempt rows (%s deliveries, two attempts each: a 500, then success or, for one in ten, a final failure) over %d endpoints of one account, accepted over the last 20 days, loaded server-side in %s.",
					load.Thousands(float64(cfg.Rows)), load.Thousands(float64(deliveries)), cfg.Endpoints, loaded.Round(time.Millisecond)),
				fmt.Sprintf("Queries go through the gateway with the account's API key, %d at a time (closed loop); each picks a random endpoint (and delivery).", cfg.Concurrency))
			return res, nil
		},
	}
}

// base32Alphabet is the alphabet of delivery ids (schemas.DeliveryID).
const base32Alphabet = "abcdefghijklmnopqrstuvwxyz234567"

// historyDeliveryID is the delivery id loadHistory gives delivery d: the
// shape of schemas.DeliveryID, "del_" + 26 base32 characters, the last 7
// encoding d.
func historyDeliveryID(d int) string {
	var b strings.Builder
	b.WriteString("del_" + strings.Repeat("a", 19))
	for i := range 7 {
		b.WriteByte(base32Alphabet[(d>>(5*i))%32])
	}
	return b.String()
}

// loadHistory inserts rows attempt rows server-side, two per delivery,
// with the shape analytics writes (the column list of schemas/clickhouse).
func loadHistory(ctx context.Context, addr string, t *suite.Target, endpoints []string, rows int) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native, DialTimeout: 5 * time.Second,
		Settings: clickhouse.Settings{"max_execution_time": 600}})
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	defer conn.Close()
	quoted := make([]string, len(endpoints))
	for i, e := range endpoints {
		quoted[i] = "'" + e + "'"
	}
	// The delivery id of d, computed like historyDeliveryID.
	var id strings.Builder
	id.WriteString("concat('del_', '" + strings.Repeat("a", 19) + "'")
	for i := range 7 {
		fmt.Fprintf(&id, ", substring('%s', toUInt64(bitAnd(bitShiftRight(d, %d), 31)) + 1, 1)", base32Alphabet, 5*i)
	}
	id.WriteString(")")
	n := len(endpoints)
	deliveries := rows / 2
	q := fmt.Sprintf(`INSERT INTO %[1]s.attempts (account_id, endpoint_id, accepted_at, delivery_id, attempt, event_id, event_type, outcome, http_status, latency_ms, error_code, error, response_excerpt, test, event_created, attempted_at, next_retry_at, inserted_at)
SELECT
    '%[2]s',
    [%[3]s][d %% %[4]d + 1],
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[5]d)),
    %[6]s,
    toUInt16(a),
    concat('evt_bench_', toString(d)),
    '%[7]s',
    a = 1 ? 'retrying' : (intDiv(d, %[4]d) %% 10 = 0 ? 'failed' : 'success'),
    toUInt16(a = 1 OR intDiv(d, %[4]d) %% 10 = 0 ? 500 : 200),
    toUInt32(rand() %% 3000),
    a = 1 OR intDiv(d, %[4]d) %% 10 = 0 ? 'http_status' : '',
    a = 1 OR intDiv(d, %[4]d) %% 10 = 0 ? 'Internal server error' : '',
    '{"ok":false}',
    toUInt8(0),
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[5]d)),
    toDateTime(toUInt32(now()) - 1728000 + toUInt32(d * 1728000 / %[5]d) + (a - 1) * 60),
    toDateTime(0),
    now()
FROM (SELECT intDiv(number, 2) AS d, number %% 2 + 1 AS a FROM numbers(%[8]d))`,
		t.Database, t.Account, strings.Join(quoted, ","), n, deliveries, id.String(), EventType, rows)
	if err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("load the delivery log: %w", err)
	}
	var got uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+t.Database+".attempts").Scan(&got); err != nil {
		return fmt.Errorf("count the delivery log: %w", err)
	}
	if got < uint64(rows) {
		return fmt.Errorf("the delivery log holds %d rows after loading %d", got, rows)
	}
	return nil
}
