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

// Config is the analytics component's configuration. RegisterFlags sets the
// documented defaults; Kafka is filled by the caller from the kafka.* flags.
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

// RegisterFlags registers the analytics.* and clickhouse.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OpsListen, "analytics.ops-listen", "127.0.0.1:9103", "address of the analytics /metrics, /healthz and /readyz")
	fs.StringVar(&c.ClickHouseAddr, "clickhouse.addr", "127.0.0.1:9000", "ClickHouse native protocol address")
	fs.StringVar(&c.ClickHouseDatabase, "clickhouse.database", "zaits", "ClickHouse database (created if missing)")
	fs.StringVar(&c.ClickHouseUser, "clickhouse.user", "default", "ClickHouse user")
	fs.Var(&c.ClickHousePassword, "clickhouse.password", "ClickHouse password")
	fs.DurationVar(&c.ClickHouseDialTimeout, "clickhouse.dial-timeout", 3*time.Second, "timeout for connecting to ClickHouse")
	fs.StringVar(&c.Group, "analytics.group", "", "Kafka consumer group over <prefix>.attempts (default <prefix>.analytics)")
	fs.IntVar(&c.BatchRows, "analytics.batch-rows", 50000, "attempt records per ClickHouse insert, at most")
	fs.DurationVar(&c.BatchInterval, "analytics.batch-interval", time.Second, "longest wait before a non-empty batch is inserted")
	fs.DurationVar(&c.Retention, "analytics.retention", 30*24*time.Hour, "how long delivery attempts are kept in ClickHouse")
	fs.DurationVar(&c.RetentionCheck, "analytics.retention-check", time.Hour, "how often expired monthly partitions are dropped")
	fs.DurationVar(&c.SuccessRateWindow, "analytics.success-rate-window", 7*24*time.Hour, "window of the endpoint list's success_rate")
}

var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
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
