package dispatcher

import (
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
)

// Config is the dispatcher's configuration. RegisterFlags sets the
// documented defaults; Kafka is filled by the caller from the kafka.* flags.
type Config struct {
	Kafka *broker.Config
	// Endpoints configures the endpoint store (shared endpoints.* flags).
	Endpoints *endpoint.Config
	// Delivery configures the HTTP client (shared delivery.* flags).
	Delivery *ClientConfig
	// Dev is development mode (the shared -dev flag).
	Dev bool

	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9102.
	OpsListen string
}

// RegisterFlags registers the dispatcher.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OpsListen, "dispatcher.ops-listen", "127.0.0.1:9102", "address of the dispatcher's /metrics, /healthz and /readyz")
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Kafka == nil || c.Endpoints == nil || c.Delivery == nil {
		errs = append(errs, errors.New("dispatcher: kafka, endpoints or delivery configuration missing"))
	} else {
		errs = append(errs, c.Kafka.Validate(), c.Endpoints.Validate(), c.Delivery.Validate())
	}
	if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
		errs = append(errs, fmt.Errorf("dispatcher.ops-listen: %q is not host:port: %w", c.OpsListen, err))
	}
	return errors.Join(errs...)
}
