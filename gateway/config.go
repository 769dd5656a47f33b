package gateway

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/flagenv"
)

// Config is the gateway's configuration. A zero field means its documented
// default (withDefaults is the one place they are written); Kafka is filled
// by the caller from the shared kafka.* flags.
type Config struct {
	Kafka *broker.Config
	// Endpoints configures the endpoint store (shared endpoints.* flags).
	Endpoints *endpoint.Config
	// Dev is development mode (the shared -dev flag): http URLs and loopback
	// addresses allowed, a development account and key.
	Dev bool
	// Delivery configures the client of POST …/test (the dispatcher's
	// delivery.* flags). Nil: the client's defaults, loopback allowed in Dev.
	Delivery *dispatcher.ClientConfig
	// History is the ClickHouse configuration of the delivery log (the
	// analytics clickhouse.* flags). Nil: the delivery routes answer 503
	// history_unavailable and last_delivery/success_rate stay null.
	History *analytics.Config

	// Listen is the public API address. Default 127.0.0.1:8080.
	Listen string
	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9101.
	OpsListen string

	// APIKeys are the management API keys as "<account>:<sha256 hex of the
	// key>" entries, comma-separated (see `zaits mint-key`). Default none.
	APIKeys string
	// ServiceTokens are the ingestion service tokens as "<name>:<sha256 hex
	// of the token>" entries, comma-separated. They may post events for any
	// account and cannot use the management API. Default none.
	ServiceTokens string
	// RateLimit is each API key's sustained request rate per second on the
	// management API (token bucket). Default 20; negative: no limit.
	RateLimit float64
	// RateBurst is the bucket size: requests a key may make at once. Default 40.
	RateBurst int
	// AllowHTTP accepts http:// endpoint URLs (development, the bench).
	// Default false; Dev implies it.
	AllowHTTP bool
	// AllowPrivate accepts endpoint URLs whose host is a literal loopback,
	// private or link-local address. Default false; Dev implies it.
	AllowPrivate bool

	// Ingest configures event ingestion over HTTP (ingest.go).
	Ingest IngestConfig
	// Limits bounds connections, read times and failed authentications of
	// the public API (limits.go).
	Limits LimitsConfig
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Kafka = broker.Defaulted(c.Kafka)
	if c.History != nil {
		h := c.History.WithDefaults()
		c.History = &h
	}
	flagenv.Default(&c.Listen, "127.0.0.1:8080")
	flagenv.Default(&c.OpsListen, "127.0.0.1:9101")
	flagenv.Default(&c.RateLimit, 20)
	flagenv.Default(&c.RateBurst, 40)
	c.Ingest = c.Ingest.withDefaults()
	c.Limits = c.Limits.withDefaults()
	return c
}

// RegisterFlags registers the gateway.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.withDefaults()
	fs.StringVar(&c.Listen, "gateway.listen", d.Listen, "address of the public HTTP API")
	fs.StringVar(&c.OpsListen, "gateway.ops-listen", d.OpsListen, "address of the gateway's /metrics, /healthz and /readyz")
	fs.StringVar(&c.APIKeys, "gateway.api-keys", "", "management API keys: comma-separated <account>:<sha256 hex of key> (zaits mint-key prints one)")
	fs.StringVar(&c.ServiceTokens, "gateway.service-tokens", "", "ingestion service tokens: comma-separated <name>:<sha256 hex of token> (zaits mint-key -service prints one)")
	flagenv.OffFloat64(fs, &c.RateLimit, "gateway.rate-limit", d.RateLimit, "requests per second per API key on the management API (0: unlimited)")
	fs.IntVar(&c.RateBurst, "gateway.rate-burst", d.RateBurst, "burst size of the per-key rate limit")
	fs.BoolVar(&c.AllowHTTP, "gateway.allow-http", false, "accept http:// endpoint URLs (development and bench; -dev implies it)")
	fs.BoolVar(&c.AllowPrivate, "gateway.allow-private", false, "accept endpoint URLs on literal loopback/private/link-local addresses (-dev implies it)")
	c.Ingest.RegisterFlags(fs)
	c.Limits.RegisterFlags(fs)
}

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	var errs []error
	if c.Kafka == nil || c.Endpoints == nil {
		errs = append(errs, errors.New("gateway: kafka or endpoints configuration missing"))
	} else {
		errs = append(errs, c.Kafka.Validate(), c.Endpoints.Validate())
	}
	errs = append(errs, validAddr("gateway.listen", c.Listen), validAddr("gateway.ops-listen", c.OpsListen))
	if _, err := parseCredentials("gateway.api-keys", c.APIKeys); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseCredentials("gateway.service-tokens", c.ServiceTokens); err != nil {
		errs = append(errs, err)
	}
	if c.Delivery != nil {
		errs = append(errs, c.Delivery.Validate())
	}
	if c.History != nil {
		errs = append(errs, c.History.Validate())
	}
	if math.IsNaN(c.RateLimit) || c.RateLimit > maxRateLimit {
		errs = append(errs, fmt.Errorf("gateway.rate-limit: must be at most %d requests per second, got %g", maxRateLimit, c.RateLimit))
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("gateway.rate-burst: must be at least 1, got %d", c.RateBurst))
	}
	errs = append(errs, c.Ingest.validate(), c.Limits.validate())
	return errors.Join(errs...)
}

// maxRateLimit bounds -gateway.rate-limit (requests per second per key).
const maxRateLimit = 1000000

func validAddr(flag, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", flag, addr, err)
	}
	return nil
}
