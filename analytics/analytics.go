package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// Analytics consumes attempt records and serves the delivery log.
type Analytics struct {
	cfg Config
	log *slog.Logger
	ops *ops.Server
	ch  driver.Conn
	w   *writer

	migrated atomic.Bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// New builds the component and opens (lazily) the ClickHouse connection pool.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Analytics, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ch, err := Open(cfg, "default")
	if err != nil {
		return nil, err
	}
	m, err := newWriterMetrics(reg)
	if err != nil {
		return nil, errors.Join(err, ch.Close())
	}
	a := &Analytics{cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log), ch: ch}
	a.w = newWriter(cfg, log, ch, m)
	topic := cfg.Kafka.Topic(schemas.TopicAttempts)
	a.ops.AddCheck("kafka", func(ctx context.Context) error { return cfg.Kafka.Ping(ctx, topic) })
	a.ops.AddCheck("clickhouse", func(ctx context.Context) error {
		if err := a.ch.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse %s: %w", cfg.ClickHouseAddr, err)
		}
		return nil
	})
	a.ops.AddCheck("delivery-log", func(ctx context.Context) error {
		if !a.migrated.Load() {
			return errors.New("clickhouse schema not migrated yet")
		}
		return a.w.ready(ctx)
	})
	return a, nil
}

// Open connects to ClickHouse over the native protocol (the HTTP transport
// does not work with the 18.16 server CI runs). db names the default database.
func Open(cfg Config, db string) (driver.Conn, error) {
	cfg = cfg.WithDefaults()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{cfg.ClickHouseAddr},
		Auth:        clickhouse.Auth{Database: db, Username: cfg.ClickHouseUser, Password: string(cfg.ClickHousePassword)},
		Protocol:    clickhouse.Native,
		DialTimeout: cfg.ClickHouseDialTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.ClickHouseAddr, err)
	}
	return conn, nil
}

// Start provisions the topics and serves the ops endpoints, then, in the
// background, migrates the ClickHouse schema (retrying with backoff while
// ClickHouse is unreachable: /readyz says so meanwhile), and runs the
// writer and the periodic retention.
func (a *Analytics) Start(ctx context.Context) error {
	if err := a.ops.Start(); err != nil {
		return err
	}
	if err := broker.WaitAndEnsureTopics(ctx, a.cfg.Kafka, a.log); err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Go(func() {
		if !a.migrate(rctx) {
			return
		}
		a.wg.Go(func() { a.retain(rctx) })
		a.w.run(rctx)
	})
	a.log.Info("analytics running", "ops", a.ops.Addr(), "clickhouse", a.cfg.ClickHouseAddr, "database", a.cfg.ClickHouseDatabase,
		"group", a.cfg.GroupID(), "batch_rows", a.cfg.BatchRows, "batch_interval", a.cfg.BatchInterval, "retention", a.cfg.Retention)
	return nil
}

// migrate applies the migrations, retrying with backoff; false when ctx ended first.
func (a *Analytics) migrate(ctx context.Context) bool {
	backoff := retry.Backoff{Min: 200 * time.Millisecond}
	for {
		err := Migrate(ctx, a.ch, a.cfg.ClickHouseDatabase, a.cfg.RetentionDays(), a.log)
		if err == nil {
			a.migrated.Store(true)
			return true
		}
		wait := backoff.Next()
		a.log.Warn("clickhouse migrations failed, retrying", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return false
		}
	}
}

// retain drops expired monthly partitions now and every RetentionCheck.
func (a *Analytics) retain(ctx context.Context) {
	for {
		dropped, err := DropExpiredPartitions(ctx, a.ch, a.cfg.ClickHouseDatabase, a.cfg.Retention, time.Now())
		if err != nil && ctx.Err() == nil {
			a.log.Warn("retention: dropping expired partitions failed", "err", err)
		}
		if len(dropped) > 0 {
			a.log.Info("retention: dropped expired partitions", "partitions", dropped, "retention", a.cfg.Retention)
		}
		if !retry.Sleep(ctx, a.cfg.RetentionCheck) {
			return
		}
	}
}

// OpsAddr is the bound ops address.
func (a *Analytics) OpsAddr() string { return a.ops.Addr() }

// Stop ends the writer (a batch not yet inserted stays uncommitted in
// Kafka), stops the ops server and closes the ClickHouse pool. Calling it
// again returns the first call's result.
func (a *Analytics) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.stop(ctx) })
	return a.stopErr
}

func (a *Analytics) stop(ctx context.Context) error {
	if a.cancel != nil {
		a.cancel()
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("analytics: writer did not stop: %w", ctx.Err()))
	}
	errs = append(errs, a.ops.Stop(ctx), a.ch.Close())
	return errors.Join(errs...)
}
