package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
)

// migrate applies the ClickHouse migrations of schemas/clickhouse (the same
// ones analytics applies at start-up) and exits.
func migrate(args []string) int {
	fs := flag.NewFlagSet("zaits migrate", flag.ContinueOnError)
	logFormat := fs.String("log.format", "text", "log format: text or json")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	timeout := fs.Duration("timeout", time.Minute, "how long the migration may take")
	var kafkaCfg broker.Config
	kafkaCfg.RegisterFlags(fs)
	cfg := analytics.Config{Kafka: &kafkaCfg}
	cfg.RegisterFlags(fs)
	if err := flagenv.Parse(fs, "ZAITS", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "zaits migrate: %v\n", err)
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zaits migrate: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	conn, err := analytics.Open(cfg, "default")
	if err != nil {
		log.Error("migrate", "err", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := analytics.Migrate(ctx, conn, cfg.ClickHouseDatabase, cfg.RetentionDays(), log); err != nil {
		log.Error("migrate", "err", err)
		return 1
	}
	log.Info("clickhouse schema up to date", "clickhouse", cfg.ClickHouseAddr, "database", cfg.ClickHouseDatabase)
	return 0
}
