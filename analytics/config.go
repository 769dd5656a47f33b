package analytics

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
)

// Config is the analytics component's configuration. A zero field means its
// documented default (WithDefaults is the one place they are written);
// Kafka is filled by the caller from the kafka.* flags.
type Config struct {
	Kafka *broker.Config

	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9103.
	OpsListen string
	// ClickHouseAddr is the native-protocol address. Default 127.0.0.1:9000.
	ClickHouseAddr string
	// ClickHouseDatabase is created at start-up if missing. Default "zaits".
	ClickHouseDatabase string
	// ClickHouseUser. Default "default".
	ClickHouseUser string
	// ClickHousePassword. Default empty.
	ClickHousePassword flagenv.Secret
	// ClickHouseDialTimeout. Default 3s.
	ClickHouseDialTimeout time.Duration

	// Group is the Kafka consumer group over <p>.attempts.
	// Default empty: "<kafka.topic-prefix>.analytics".
	Group string
	// BatchRows flushes a batch at this many attempt records. Default 50000.
	BatchRows int
	// BatchInterval flushes a non-empty batch this long after its first
	// record arrived. Default 1s.
	BatchInterval time.Duration
	// Retention is how long attempts are kept. Default 720h (30 days).
	Retention time.Duration
	// RetentionCheck is how often expired monthly partitions are dropped. Default 1h.
	RetentionCheck time.Duration
	// SuccessRateWindow is the window of the endpoint list's success_rate. Default 168h (7 days).
	SuccessRateWindow time.Duration
}

// GroupID is the consumer group: Group, or "<prefix>.analytics" when empty.
func (c *Config) GroupID() string {
	if c.Group != "" {
		return c.Group
	}
	return c.Kafka.TopicPrefix + ".analytics"
}

// RetentionDays is Retention in whole days, rounded up (the TTL's unit).
func (c *Config) RetentionDays() int {
	return int((c.Retention + 24*time.Hour - 1) / (24 * time.Hour))
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Kafka = broker.Defaulted(c.Kafka)
	flagenv.Default(&c.OpsListen, "127.0.0.1:9103")
	flagenv.Default(&c.ClickHouseAddr, "127.0.0.1:9000")
	flagenv.Default(&c.ClickHouseDatabase, "zaits")
	flagenv.Default(&c.ClickHouseUser, "default")
	flagenv.Default(&c.ClickHouseDialTimeout, 3*time.Second)
	flagenv.Default(&c.BatchRows, 50000)
	flagenv.Default(&c.BatchInterval, time.Second)
	flagenv.Default(&c.Retention, 30*24*time.Hour)
	flagenv.Default(&c.RetentionCheck, time.Hour)
	flagenv.Default(&c.SuccessRateWindow, 7*24*time.Hour)
	return c
}

// RegisterFlags registers the analytics.* and clickhouse.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.WithDefaults()
	fs.StringVar(&c.OpsListen, "analytics.ops-listen", d.OpsListen, "address of the analytics /metrics, /healthz and /readyz")
	fs.StringVar(&c.ClickHouseAddr, "clickhouse.addr", d.ClickHouseAddr, "ClickHouse native protocol address")
	fs.StringVar(&c.ClickHouseDatabase, "clickhouse.database", d.ClickHouseDatabase, "ClickHouse database (created if missing)")
	fs.StringVar(&c.ClickHouseUser, "clickhouse.user", d.ClickHouseUser, "ClickHouse user")
	fs.Var(&c.ClickHousePassword, "clickhouse.password", "ClickHouse password")
	fs.DurationVar(&c.ClickHouseDialTimeout, "clickhouse.dial-timeout", d.ClickHouseDialTimeout, "timeout for connecting to ClickHouse")
	fs.StringVar(&c.Group, "analytics.group", "", "Kafka consumer group over <prefix>.attempts (default <prefix>.analytics)")
	fs.IntVar(&c.BatchRows, "analytics.batch-rows", d.BatchRows, "attempt records per ClickHouse insert, at most")
	fs.DurationVar(&c.BatchInterval, "analytics.batch-interval", d.BatchInterval, "longest wait before a non-empty batch is inserted")
	fs.DurationVar(&c.Retention, "analytics.retention", d.Retention, "how long delivery attempts are kept in ClickHouse")
	fs.DurationVar(&c.RetentionCheck, "analytics.retention-check", d.RetentionCheck, "how often expired monthly partitions are dropped")
	fs.DurationVar(&c.SuccessRateWindow, "analytics.success-rate-window", d.SuccessRateWindow, "window of the endpoint list's success_rate")
}

var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error { return c.WithDefaults().validate() }

func (c Config) validate() error {
	var errs []error
	if c.Kafka == nil {
		errs = append(errs, errors.New("analytics: kafka configuration missing"))
	} else if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
		errs = append(errs, fmt.Errorf("analytics.ops-listen: %q is not host:port: %w", c.OpsListen, err))
	}
	if _, _, err := net.SplitHostPort(c.ClickHouseAddr); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse.addr: %q is not host:port: %w", c.ClickHouseAddr, err))
	}
	if !identRE.MatchString(c.ClickHouseDatabase) {
		errs = append(errs, fmt.Errorf("clickhouse.database: %q is not a plain identifier (letters, digits, '_')", c.ClickHouseDatabase))
	}
	if c.ClickHouseDialTimeout <= 0 {
		errs = append(errs, errors.New("clickhouse.dial-timeout: must be positive"))
	}
	if c.BatchRows < 1 || c.BatchRows > 1_000_000 {
		errs = append(errs, fmt.Errorf("analytics.batch-rows: %d is outside 1..1000000", c.BatchRows))
	}
	if c.BatchInterval <= 0 {
		errs = append(errs, errors.New("analytics.batch-interval: must be positive"))
	}
	if c.Retention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("analytics.retention: %s is shorter than one day", c.Retention))
	}
	if c.RetentionCheck <= 0 {
		errs = append(errs, errors.New("analytics.retention-check: must be positive"))
	}
	if c.SuccessRateWindow <= 0 {
		errs = append(errs, errors.New("analytics.success-rate-window: must be positive"))
	}
	return errors.Join(errs...)
}
