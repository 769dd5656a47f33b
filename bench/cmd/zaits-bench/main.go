// Command zaits-bench runs the reproducible benchmark suite against the
// Zaits webhook gateway and writes a results folder per run under
// bench/results/ (report.md, results.json, SVG charts). See bench/README.md.
//
// Every flag can also be set through the environment: -bench.token is
// ZAITS_BENCH_TOKEN, -kafka.brokers is ZAITS_KAFKA_BROKERS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/zaits/webhooks/bench/scenario"
	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("zaits-bench", flag.ContinueOnError)
	render := fs.String("render", "", "draw the charts and report.md of an existing results folder again from its results.json, then exit")
	var (
		kafkaCfg   broker.Config
		suiteCfg   = suite.Config{Kafka: &kafkaCfg}
		ceilingCfg scenario.CeilingConfig
		ingestCfg  = scenario.IngestConfig{Kafka: &kafkaCfg}
		e2eCfg     scenario.E2EConfig
		steadyCfg  = scenario.E2EConfig{Steady: true}
		failCfg    scenario.FailuresConfig
		histCfg    scenario.HistoryConfig
		recCfg     scenario.RecoveryConfig
		backCfg    = scenario.BacklogConfig{Kafka: &kafkaCfg}
	)
	kafkaCfg.RegisterFlags(fs)
	suiteCfg.RegisterFlags(fs)
	ceilingCfg.RegisterFlags(fs)
	ingestCfg.RegisterFlags(fs)
	e2eCfg.RegisterFlags(fs)
	steadyCfg.RegisterFlags(fs)
	failCfg.RegisterFlags(fs)
	histCfg.RegisterFlags(fs)
	recCfg.RegisterFlags(fs)
	backCfg.RegisterFlags(fs)
	all := []suite.Scenario{scenario.Ceiling(&ceilingCfg), scenario.Ingest(&ingestCfg), scenario.E2E(&e2eCfg), scenario.E2E(&steadyCfg), scenario.Failures(&failCfg), scenario.History(&histCfg), scenario.Recovery(&recCfg), scenario.Backlog(&backCfg)}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: zaits-bench [flags]\n\nscenarios:\n")
		for _, s := range all {
			fmt.Fprintf(fs.Output(), "  %-10s %s\n", s.Name, s.About)
		}
		fmt.Fprintf(fs.Output(), "\nflags (each also from the environment as ZAITS_<FLAG>):\n")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "ZAITS", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "zaits-bench: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *render != "" {
		su, err := suite.Load(*render)
		if err == nil {
			err = su.Write()
		}
		if err != nil {
			log.Error("render", "err", err)
			return 1
		}
		fmt.Printf("rendered %s/report.md\n", su.Dir)
		return 0
	}
	scenarios, selErr := suite.Select(all, &suiteCfg)
	if err := errors.Join(suiteCfg.Validate(), ceilingCfg.Validate(), ingestCfg.Validate(), e2eCfg.Validate(), steadyCfg.Validate(), failCfg.Validate(), histCfg.Validate(), recCfg.Validate(), backCfg.Validate(), selErr); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	settings := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if s, ok := f.Value.(*flagenv.Secret); ok {
			settings[f.Name] = s.LogValue().String()
			return
		}
		settings[f.Name] = f.Value.String()
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	su, err := suite.Run(ctx, &suiteCfg, scenarios, settings, log)
	if err != nil {
		log.Error("bench", "err", err)
		return 1
	}
	fmt.Printf("\nresults: %s/report.md\n\n", su.Dir)
	su.PrintSummary(os.Stdout)
	for _, r := range su.Results {
		if r.Status == "failed" {
			return 1
		}
	}
	return 0
}
