package gateway

import (
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
)

// Config is the gateway's configuration. RegisterFlags sets the documented
// defaults; Kafka is filled by the caller from the shared kafka.* flags.
type Config struct {
	Kafka *broker.Config
	// Endpoints configures the endpoint store (shared endpoints.* flags).
	Endpoints *endpoint.Config
	// Dev is development mode (the shared -dev flag): http URLs and loopback
	// addresses allowed, a development account and key.
	Dev bool

	// Listen is the public API address. Default 127.0.0.1:8080.
	Listen string
	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9101.
	OpsListen string
}

// RegisterFlags registers the gateway.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "gateway.listen", "127.0.0.1:8080", "address of the public HTTP API")
	fs.StringVar(&c.OpsListen, "gateway.ops-listen", "127.0.0.1:9101", "address of the gateway's /metrics, /healthz and /readyz")
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Kafka == nil || c.Endpoints == nil {
		errs = append(errs, errors.New("gateway: kafka or endpoints configuration missing"))
	} else {
		errs = append(errs, c.Kafka.Validate(), c.Endpoints.Validate())
	}
	errs = append(errs, validAddr("gateway.listen", c.Listen), validAddr("gateway.ops-listen", c.OpsListen))
	return errors.Join(errs...)
}

func validAddr(flag, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", flag, addr, err)
	}
	return nil
}
