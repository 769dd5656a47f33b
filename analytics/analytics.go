// Package analytics keeps the delivery log: it writes every attempt from
// <p>.attempts into ClickHouse and answers history and success-rate queries.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/schemas"
)

// Analytics consumes attempt records and serves the delivery log.
type Analytics struct {
	cfg Config
	log *slog.Logger
	ops *ops.Server
	ch  driver.Conn
}

// New builds the component and opens (lazily) the ClickHouse connection pool.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Analytics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ch, err := Open(cfg, "default")
	if err != nil {
		return nil, err
	}
	a := &Analytics{cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log), ch: ch}
	topic := cfg.Kafka.Topic(schemas.TopicAttempts)
	a.ops.AddCheck("kafka", func(ctx context.Context) error { return cfg.Kafka.Ping(ctx, topic) })
	a.ops.AddCheck("clickhouse", func(ctx context.Context) error {
		if err := a.ch.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse %s: %w", cfg.ClickHouseAddr, err)
		}
		return nil
	})
	return a, nil
}

// Open connects to ClickHouse over the native protocol (the HTTP transport
// does not work with the 18.16 server CI runs). db names the default database.
func Open(cfg Config, db string) (driver.Conn, error) {
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

// Start provisions the topics, creates the database and serves the ops endpoints.
func (a *Analytics) Start(ctx context.Context) error {
	if err := a.ops.Start(); err != nil {
		return err
	}
	if err := broker.WaitAndEnsureTopics(ctx, a.cfg.Kafka, a.log); err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	if err := a.ch.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+a.cfg.ClickHouseDatabase); err != nil {
		return fmt.Errorf("analytics: create database %s: %w", a.cfg.ClickHouseDatabase, err)
	}
	a.log.Info("analytics running", "ops", a.ops.Addr(), "clickhouse", a.cfg.ClickHouseAddr, "database", a.cfg.ClickHouseDatabase)
	return nil
}

// OpsAddr is the bound ops address.
func (a *Analytics) OpsAddr() string { return a.ops.Addr() }

// Stop stops the component and closes the ClickHouse pool.
func (a *Analytics) Stop(ctx context.Context) error {
	return errors.Join(a.ops.Stop(ctx), a.ch.Close())
}
