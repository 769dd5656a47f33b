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
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/internal/ops"
)

// component is what serve starts and stops.
type component interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// serve runs one component (or all three) until SIGINT or SIGTERM:
// config → init → start → wait for signal → stop in reverse order.
func serve(cmd string, args []string) int {
	// Config.
	fs := flag.NewFlagSet("zaits "+cmd, flag.ContinueOnError)
	logFormat := fs.String("log.format", "text", "log format: text or json")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	checkConfig := fs.Bool("check-config", false, "validate the configuration, print it and exit")
	shutdownTimeout := fs.Duration("shutdown-timeout", 8*time.Second, "how long a graceful shutdown may take")
	dev := fs.Bool("dev", false, "development mode: a development account and API key, http URLs and loopback receivers allowed, a fixed encryption key; never in production")
	var kafkaCfg broker.Config
	kafkaCfg.RegisterFlags(fs)
	run := func(name string) bool { return cmd == "all" || cmd == name }
	var epCfg endpoint.Config
	var dlCfg dispatcher.ClientConfig // delivery.*: the dispatcher's and the gateway's test deliveries
	if run("gateway") || run("dispatcher") {
		epCfg.RegisterFlags(fs)
		dlCfg.RegisterFlags(fs)
	}
	var (
		anCfg = analytics.Config{Kafka: &kafkaCfg}
		diCfg = dispatcher.Config{Kafka: &kafkaCfg, Endpoints: &epCfg, Delivery: &dlCfg}
		// The gateway's test deliveries use the delivery client; its delivery
		// history routes read what analytics writes (clickhouse.* flags).
		gwCfg = gateway.Config{Kafka: &kafkaCfg, Endpoints: &epCfg, Delivery: &dlCfg, History: &anCfg}
	)
	if run("analytics") || run("gateway") {
		anCfg.RegisterFlags(fs)
	}
	if run("dispatcher") {
		diCfg.RegisterFlags(fs)
	}
	if run("gateway") {
		gwCfg.RegisterFlags(fs)
	}
	if err := flagenv.Parse(fs, "ZAITS", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "zaits %s: %v\n", cmd, err)
		return 2
	}
	epCfg.Dev, diCfg.Dev, gwCfg.Dev, dlCfg.Dev = *dev, *dev, *dev, *dev
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zaits %s: %v\n", cmd, err)
		return 2
	}
	var errs []error
	if run("analytics") {
		errs = append(errs, anCfg.Validate())
	}
	if run("dispatcher") {
		errs = append(errs, diCfg.Validate())
	}
	if run("gateway") {
		errs = append(errs, gwCfg.Validate())
	}
	if *shutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown-timeout: must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	log.Info("configuration", "subcommand", cmd, "config", flagenv.LogValue(fs))
	if *checkConfig {
		return 0
	}

	// Init: the order is the start order; stop runs in reverse.
	var comps []component
	if run("analytics") {
		a, err := analytics.New(anCfg, log.With("component", "analytics"), ops.NewRegistry())
		if err != nil {
			log.Error("analytics", "err", err)
			return 1
		}
		comps = append(comps, a)
	}
	if run("dispatcher") {
		d, err := dispatcher.New(diCfg, log.With("component", "dispatcher"), ops.NewRegistry())
		if err != nil {
			log.Error("dispatcher", "err", err)
			return 1
		}
		comps = append(comps, d)
	}
	if run("gateway") {
		g, err := gateway.New(gwCfg, log.With("component", "gateway"), ops.NewRegistry())
		if err != nil {
			log.Error("gateway", "err", err)
			return 1
		}
		comps = append(comps, g)
	}

	// Serve.
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	code := 0
	started := 0
	for _, c := range comps {
		if err := c.Start(ctx); err != nil {
			log.Error("start failed", "err", err)
			code = 1
			break
		}
		started++
	}

	// Wait for a signal.
	if code == 0 {
		log.Info("started; stop with Ctrl-C or SIGTERM", "subcommand", cmd)
		<-ctx.Done()
		log.Info("shutting down", "timeout", *shutdownTimeout)
	}
	stopSignals() // a second Ctrl-C now kills the process the default way

	// Stop in reverse, within one bound.
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	// A component whose Start failed may hold listeners already: it is stopped too.
	for i := min(started, len(comps)-1); i >= 0; i-- {
		if err := comps[i].Stop(sctx); err != nil {
			log.Error("stop", "err", err)
			code = 1
		}
	}
	log.Info("stopped")
	return code
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log.format: %q is neither text nor json", format)
}
