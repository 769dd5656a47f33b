package router

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/flagenv"
)

// Config configures the router. A zero field means its documented default
// (withDefaults is the one place they are written); Kafka and Endpoints are
// filled by the caller from the shared kafka.* and endpoints.* flags.
type Config struct {
	Kafka *broker.Config
	// Endpoints configures the router's endpoint store.
	Endpoints *endpoint.Config
	// Dev is development mode (the shared -dev flag).
	Dev bool
	// History is the ClickHouse configuration of the delivery log (the
	// analytics clickhouse.* flags): recover and replay jobs and the check
	// that disables failing endpoints read it. Nil: those jobs fail and the
	// check does not run; live routing and redrive jobs do not need it.
	History *analytics.Config

	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9104.
	OpsListen string
	// Group is the consumer group over <p>.events. Default "<kafka.topic-prefix>.router".
	Group string
	// CommitInterval is how often finished offsets are committed (also on
	// rebalance and shutdown). Default 1s.
	CommitInterval time.Duration
	// SessionTimeout is how soon the group reassigns the partitions of a
	// router that stopped heartbeating (crashed). Default 10s.
	SessionTimeout time.Duration
	// DedupWindow is how long an event id is remembered (at least 1h).
	// Default 1h.
	DedupWindow time.Duration
	// DedupIDs bounds the ids remembered per partition of <p>.events
	// (about 32 bytes each). Default 500000.
	DedupIDs int

	// JobRate is the tasks per second of a recovery job that asks for no
	// rate. Default 500.
	JobRate int
	// JobsMaxRate bounds the tasks per second of all the jobs this router
	// runs together (so live deliveries keep their latency), and the rate
	// of any one of them. Default 2000.
	JobsMaxRate int
	// DisableAfter disables an endpoint whose every attempt failed for this
	// long (it is told with a webhook.endpoint.disabled event). Default 120h
	// (5 days); negative: never.
	DisableAfter time.Duration
	// HealthInterval is how often the router that owns partition 0 of
	// <p>.events looks for such endpoints. Default 10m.
	HealthInterval time.Duration
	// EndpointsWait bounds how long a fetched batch of events waits for the
	// router's endpoint view to reach the end of <p>.endpoints read after
	// the fetch (causal routing); 12 times as long when those offsets are
	// known and only the view lags. When it passes the batch is routed with
	// the view as it is, counted by zaits_router_stale_routes_total and
	// logged. Default 5s.
	EndpointsWait time.Duration
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Kafka = broker.Defaulted(c.Kafka)
	if c.History != nil {
		h := c.History.WithDefaults()
		c.History = &h
	}
	flagenv.Default(&c.OpsListen, "127.0.0.1:9104")
	if c.Group == "" && c.Kafka != nil {
		c.Group = c.Kafka.Topic("router")
	}
	flagenv.Default(&c.CommitInterval, time.Second)
	flagenv.Default(&c.SessionTimeout, 10*time.Second)
	flagenv.Default(&c.DedupWindow, time.Hour)
	flagenv.Default(&c.DedupIDs, 500000)
	flagenv.Default(&c.JobRate, 500)
	flagenv.Default(&c.JobsMaxRate, 2000)
	flagenv.Default(&c.DisableAfter, 5*24*time.Hour)
	flagenv.Default(&c.HealthInterval, 10*time.Minute)
	flagenv.Default(&c.EndpointsWait, 5*time.Second)
	return c
}

// RegisterFlags registers the router.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.withDefaults()
	fs.StringVar(&c.OpsListen, "router.ops-listen", d.OpsListen, "address of the router's /metrics, /healthz and /readyz")
	fs.StringVar(&c.Group, "router.group", "", "consumer group of the routers (empty: <kafka.topic-prefix>.router)")
	fs.DurationVar(&c.CommitInterval, "router.commit-interval", d.CommitInterval, "how often the router commits the offsets of events whose tasks are acknowledged")
	fs.DurationVar(&c.SessionTimeout, "router.session-timeout", d.SessionTimeout, "how soon the partitions of a router that stopped heartbeating move to another one")
	fs.DurationVar(&c.DedupWindow, "router.dedup-window", d.DedupWindow, "how long a routed event id is remembered to drop a re-published duplicate (at least 1h)")
	fs.IntVar(&c.DedupIDs, "router.dedup-ids", d.DedupIDs, "event ids remembered per partition of <p>.events (~32 bytes each); bounds the window's memory")
	fs.IntVar(&c.JobRate, "router.job-rate", d.JobRate, "tasks per second of a recovery job (recover, replay, redrive) that asks for no rate")
	fs.IntVar(&c.JobsMaxRate, "router.jobs-max-rate", d.JobsMaxRate, "tasks per second of all recovery jobs of this router together, and of any one of them")
	flagenv.OffDuration(fs, &c.DisableAfter, "router.disable-after", d.DisableAfter, "disable an endpoint whose every attempt failed for this long (0: never)")
	fs.DurationVar(&c.HealthInterval, "router.health-interval", d.HealthInterval, "how often failing endpoints are looked for")
	fs.DurationVar(&c.EndpointsWait, "router.endpoints-wait", d.EndpointsWait, "how long fetched events wait for the router's endpoint view to reach the end of <p>.endpoints before they are routed with the view as it is (counted as stale routes)")
}

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	var errs []error
	if c.Kafka == nil || c.Endpoints == nil {
		errs = append(errs, errors.New("router: kafka or endpoints configuration missing"))
	} else {
		errs = append(errs, c.Kafka.Validate(), c.Endpoints.Validate())
	}
	if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
		errs = append(errs, fmt.Errorf("router.ops-listen: %q is not host:port: %w", c.OpsListen, err))
	}
	if c.CommitInterval < 10*time.Millisecond || c.CommitInterval > time.Minute {
		errs = append(errs, fmt.Errorf("router.commit-interval: must be 10ms..1m, got %s", c.CommitInterval))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("router.session-timeout: must be 6s..5m (the broker's group session bounds), got %s", c.SessionTimeout))
	}
	if c.DedupWindow < time.Hour {
		errs = append(errs, fmt.Errorf("router.dedup-window: must be at least 1h, got %s", c.DedupWindow))
	}
	if c.EndpointsWait < 100*time.Millisecond || c.EndpointsWait > time.Minute {
		errs = append(errs, fmt.Errorf("router.endpoints-wait: must be 100ms..1m, got %s", c.EndpointsWait))
	}
	if c.DedupIDs < 1000 {
		errs = append(errs, fmt.Errorf("router.dedup-ids: must be at least 1000, got %d", c.DedupIDs))
	}
	if c.JobsMaxRate < 1 || c.JobsMaxRate > 100000 {
		errs = append(errs, fmt.Errorf("router.jobs-max-rate: must be 1..100000, got %d", c.JobsMaxRate))
	}
	if c.JobRate < 1 || c.JobRate > c.JobsMaxRate {
		errs = append(errs, fmt.Errorf("router.job-rate: must be 1..router.jobs-max-rate (%d), got %d", c.JobsMaxRate, c.JobRate))
	}
	if c.DisableAfter > 0 && c.DisableAfter < time.Hour {
		errs = append(errs, fmt.Errorf("router.disable-after: must be at least 1h (the health rollup's resolution), got %s", c.DisableAfter))
	}
	if c.HealthInterval < time.Second {
		errs = append(errs, fmt.Errorf("router.health-interval: must be at least 1s, got %s", c.HealthInterval))
	}
	if c.History != nil {
		errs = append(errs, c.History.Validate())
	}
	return errors.Join(errs...)
}
