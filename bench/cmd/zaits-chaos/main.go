// Command zaits-chaos runs the chaos matrix (bench/chaos) against a private
// zaits on the local 3-node Kafka cluster and writes
// bench/results/<time>-chaos/ (report.md, results.json, the zaits logs).
// `make chaos` starts the cluster and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/zaits/webhooks/bench/chaos"
	"github.com/zaits/webhooks/internal/flagenv"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("zaits-chaos", flag.ContinueOnError)
	var cfg chaos.Config
	cfg.RegisterFlags(fs)
	if err := flagenv.Parse(fs, "ZAITS", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "zaits-chaos: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := cfg.Validate(); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	cluster, err := chaos.NewCluster(cfg.Script, nil)
	if err != nil {
		log.Error("cluster", "err", err)
		return 1
	}
	dir := filepath.Join(cfg.ResultsDir, time.Now().UTC().Format("20060102T150405Z")+"-chaos")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Error("results folder", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	chDir, err := os.MkdirTemp("", "zaits-chaos-clickhouse-")
	if err != nil {
		log.Error("clickhouse state", "err", err)
		return 1
	}
	defer os.RemoveAll(chDir)
	ch, err := chaos.StartClickHouse(cfg.ClickHouseScript, chDir)
	if err != nil {
		log.Error("private clickhouse", "err", err)
		return 1
	}
	defer func() {
		if err := ch.Stop(); err != nil {
			log.Warn("stopping the private clickhouse", "err", err)
		}
	}()
	log.Info("chaos matrix", "brokers", cluster.Brokers, "clickhouse", ch.Addr, "cases", cfg.Cases, "results", dir)
	results, runErr := chaos.Run(ctx, &cfg, cluster, ch, dir, log)
	if err := chaos.Write(dir, &cfg, results, nil); err != nil {
		log.Error("write results", "err", err)
		return 1
	}
	fmt.Printf("\nresults: %s/report.md\n", dir)
	if runErr != nil {
		log.Error("chaos", "err", runErr)
		return 1
	}
	for _, r := range results {
		if len(r.Problems) > 0 {
			return 1
		}
	}
	return 0
}
