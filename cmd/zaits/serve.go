package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/gateway/router"
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

// configs holds every component's configuration. The shared parts are
// registered once, when a component that runs needs them.
type configs struct {
	kafka      broker.Config
	endpoints  endpoint.Config         // endpoints.*: every component that reads endpoints
	delivery   dispatcher.ClientConfig // delivery.*: the dispatcher's and the gateway's test deliveries
	analytics  analytics.Config        // analytics.*, clickhouse.*: analytics, and the gateway's delivery history
	dispatcher dispatcher.Config
	router     router.Config
	gateway    gateway.Config
}

// Shared configuration parts a component may need.
const (
	needsEndpoints = 1 << iota
	needsDelivery
	needsAnalytics
)

// part is one component: the configuration it needs, its own flags, its
// validation and its constructor.
type part struct {
	name     string
	needs    int
	flags    func(c *configs, fs *flag.FlagSet)
	validate func(c *configs) error
	build    func(c *configs, log *slog.Logger, reg *prometheus.Registry) (component, error)
}

// parts lists the components in start order; stop runs in reverse.
var parts = []part{
	{
		name: "analytics", needs: needsAnalytics,
		validate: func(c *configs) error { return c.analytics.Validate() },
		build: func(c *configs, log *slog.Logger, reg *prometheus.Registry) (component, error) {
			return analytics.New(c.analytics, log, reg)
		},
	},
	{
		name: "dispatcher", needs: needsEndpoints | needsDelivery,
		flags:    func(c *configs, fs *flag.FlagSet) { c.dispatcher.RegisterFlags(fs) },
		validate: func(c *configs) error { return c.dispatcher.Validate() },
		build: func(c *configs, log *slog.Logger, reg *prometheus.Registry) (component, error) {
			return dispatcher.New(c.dispatcher, log, reg)
		},
	},
	{
		// Recover and replay jobs and the failing-endpoint check read the
		// delivery log (clickhouse.* flags).
		name: "router", needs: needsEndpoints | needsAnalytics,
		flags:    func(c *configs, fs *flag.FlagSet) { c.router.RegisterFlags(fs) },
		validate: func(c *configs) error { return c.router.Validate() },
		build: func(c *configs, log *slog.Logger, reg *prometheus.Registry) (component, error) {
			return router.New(c.router, log, reg)
		},
	},
	{
		// The gateway's test deliveries use the delivery client; its delivery
		// history routes read what analytics writes (clickhouse.* flags).
		name: "gateway", needs: needsEndpoints | needsDelivery | needsAnalytics,
		flags:    func(c *configs, fs *flag.FlagSet) { c.gateway.RegisterFlags(fs) },
		validate: func(c *configs) error { return c.gateway.Validate() },
		build: func(c *configs, log *slog.Logger, reg *prometheus.Registry) (component, error) {
			return gateway.New(c.gateway, log, reg)
		},
	},
}

// subcommands maps each serving subcommand to the components it runs.
// "router" in gateway and all runs unless -gateway.router=false.
var subcommands = map[string][]string{
	"gateway":    {"router", "gateway"},
	"router":     {"router"},
	"dispatcher": {"dispatcher"},
	"analytics":  {"analytics"},
	"all":        {"analytics", "dispatcher", "router", "gateway"},
}

// serve runs the components of subcommand cmd until SIGINT or SIGTERM:
// config → init → start → wait for signal → stop in reverse order.
func serve(cmd string, args []string) int {
	// Config.
	fs := flag.NewFlagSet("zaits "+cmd, flag.ContinueOnError)
	logFormat := fs.String("log.format", "text", "log format: text or json")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	checkConfig := fs.Bool("check-config", false, "validate the configuration, print it and exit")
	shutdownTimeout := fs.Duration("shutdown-timeout", 8*time.Second, "how long a graceful shutdown may take")
	dev := fs.Bool("dev", false, "development mode: a development account and API key, http URLs and loopback receivers allowed, a fixed encryption key; never in production")
	var withRouter *bool
	if cmd != "router" && slices.Contains(subcommands[cmd], "router") {
		withRouter = fs.Bool("gateway.router", true, "also run a router (the fan-out of events to delivery tasks) in this process; false when routers run as `zaits router`")
	}
	c := &configs{}
	c.kafka.RegisterFlags(fs)
	var running []part
	needs := 0
	for _, p := range parts {
		if slices.Contains(subcommands[cmd], p.name) {
			running = append(running, p)
			needs |= p.needs
		}
	}
	if needs&needsEndpoints != 0 {
		c.endpoints.RegisterFlags(fs)
	}
	if needs&needsDelivery != 0 {
		c.delivery.RegisterFlags(fs)
	}
	if needs&needsAnalytics != 0 {
		c.analytics.RegisterFlags(fs)
	}
	for _, p := range running {
		if p.flags != nil {
			p.flags(c, fs)
		}
	}
	if err := flagenv.Parse(fs, "ZAITS", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "zaits %s: %v\n", cmd, err)
		return 2
	}
	if withRouter != nil && !*withRouter {
		running = slices.DeleteFunc(running, func(p part) bool { return p.name == "router" })
	}
	c.link(*dev)
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zaits %s: %v\n", cmd, err)
		return 2
	}
	var errs []error
	for _, p := range running {
		errs = append(errs, p.validate(c))
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
	for _, p := range running {
		comp, err := p.build(c, log.With("component", p.name), ops.NewRegistry())
		if err != nil {
			log.Error(p.name, "err", err)
			return 1
		}
		comps = append(comps, comp)
	}

	// Serve.
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	code := 0
	started := 0
	for _, comp := range comps {
		if err := comp.Start(ctx); err != nil {
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

// link points every component's configuration at the shared parts and
// sets development mode on all of them.
func (c *configs) link(dev bool) {
	c.endpoints.Dev, c.delivery.Dev = dev, dev
	c.analytics.Kafka = &c.kafka
	c.dispatcher.Kafka, c.dispatcher.Endpoints, c.dispatcher.Delivery, c.dispatcher.Dev = &c.kafka, &c.endpoints, &c.delivery, dev
	c.router.Kafka, c.router.Endpoints, c.router.History, c.router.Dev = &c.kafka, &c.endpoints, &c.analytics, dev
	c.gateway.Kafka, c.gateway.Endpoints, c.gateway.Delivery, c.gateway.History, c.gateway.Dev = &c.kafka, &c.endpoints, &c.delivery, &c.analytics, dev
	// Deliveries (and the gateway's test sends) never connect to this
	// process's own ports, even where -delivery.allow-networks allows
	// loopback; the components add their bound addresses as they start.
	c.delivery.Listeners = dispatcher.NewListeners(c.gateway.Listen, c.gateway.OpsListen, c.dispatcher.OpsListen, c.router.OpsListen, c.analytics.OpsListen)
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
