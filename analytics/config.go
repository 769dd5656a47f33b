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
}

// RegisterFlags registers the analytics.* and clickhouse.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OpsListen, "analytics.ops-listen", "127.0.0.1:9103", "address of the analytics /metrics, /healthz and /readyz")
	fs.StringVar(&c.ClickHouseAddr, "clickhouse.addr", "127.0.0.1:9000", "ClickHouse native protocol address")
	fs.StringVar(&c.ClickHouseDatabase, "clickhouse.database", "zaits", "ClickHouse database (created if missing)")
	fs.StringVar(&c.ClickHouseUser, "clickhouse.user", "default", "ClickHouse user")
	fs.Var(&c.ClickHousePassword, "clickhouse.password", "ClickHouse password")
	fs.DurationVar(&c.ClickHouseDialTimeout, "clickhouse.dial-timeout", 3*time.Second, "timeout for connecting to ClickHouse")
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
	return errors.Join(errs...)
}
