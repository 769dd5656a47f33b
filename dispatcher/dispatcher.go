// Package dispatcher turns delivery tasks into signed HTTP POSTs to the
// customers' endpoints: per-endpoint lanes, delay-topic retries, attempt records.
package dispatcher

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/schemas"
)

// Dispatcher delivers tasks from <p>.deliveries and the retry topics.
type Dispatcher struct {
	cfg Config
	log *slog.Logger
	ops *ops.Server
}

// New builds a dispatcher; nothing is started until Start.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log)}
	topic := cfg.Kafka.Topic(schemas.TopicDeliveries)
	d.ops.AddCheck("kafka", func(ctx context.Context) error { return cfg.Kafka.Ping(ctx, topic) })
	return d, nil
}

// Start provisions the topics and serves the ops endpoints.
func (d *Dispatcher) Start(ctx context.Context) error {
	if err := d.ops.Start(); err != nil {
		return err
	}
	if err := broker.WaitAndEnsureTopics(ctx, d.cfg.Kafka, d.log); err != nil {
		return fmt.Errorf("dispatcher: %w", err)
	}
	d.log.Info("dispatcher running", "ops", d.ops.Addr())
	return nil
}

// OpsAddr is the bound ops address.
func (d *Dispatcher) OpsAddr() string { return d.ops.Addr() }

// Stop stops the dispatcher.
func (d *Dispatcher) Stop(ctx context.Context) error { return d.ops.Stop(ctx) }
