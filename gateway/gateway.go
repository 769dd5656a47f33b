// Package gateway is the public face of the system: the Zaits Webhook API
// (endpoint management, delivery history) and event ingestion over HTTP.
// The router, which fans events out to per-endpoint delivery tasks, is its
// own component (gateway/router); `zaits gateway` runs one beside it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mux "github.com/fasthttp/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/schemas"
)

// Gateway serves the public API.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	ops   *ops.Server
	reg   prometheus.Registerer
	store *endpoint.Store

	// Management API (management.go).
	keys         keyring
	limiter      *limiter
	authFailures *authFailures          // per client address (authfail.go)
	authRefused  *prometheus.CounterVec // answer: 401, 429
	devKey       string                 // the printed development key (Dev only)
	delivery     *dispatcher.Client
	attempts     *kafka.Writer
	history      *analytics.History
	// historyConn closes the delivery log's ClickHouse connection.
	historyConn func() error
	apiRequests *prometheus.CounterVec
	apiSeconds  *prometheus.HistogramVec

	// Event ingestion (ingest.go) and recovery (recovery.go).
	ingest   *ingester
	recovery recovery

	srv     *fasthttp.Server
	ln      net.Listener
	serving atomic.Bool // the API accepts connections (readiness)
}

// New builds a gateway; nothing is started until Start.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Gateway, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	store, err := endpoint.NewStore(*cfg.Endpoints, cfg.Kafka, log, reg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log, ops: ops.New(cfg.OpsListen, reg, log), reg: reg, store: store}
	endpointsTopic := cfg.Kafka.Topic(schemas.TopicEndpoints)
	g.ops.AddCheck("kafka", func(ctx context.Context) error { return cfg.Kafka.Ping(ctx, endpointsTopic) })
	g.ops.AddCheck("api", func(context.Context) error {
		if !g.serving.Load() {
			return errors.New("not serving the API yet (topics, the endpoint view)")
		}
		return nil
	})
	g.ingest = newIngester(cfg.Ingest, cfg.Kafka, newEventCounters(reg), reg)
	g.ops.AddCheck("ingest", func(context.Context) error { return g.ingest.ready(time.Now()) })
	if err := g.initManagement(); err != nil {
		return nil, err
	}
	g.initRecovery()

	r := mux.New()
	// An API answers what it is asked: no redirects to "fixed" paths (a 301
	// turns a POST into a GET in many clients); a wrong path is a 404.
	r.RedirectTrailingSlash, r.RedirectFixedPath = false, false
	g.routes(r)
	r.NotFound = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, fasthttp.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", ctx.Method(), ctx.Path()))
	}
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", ctx.Method(), ctx.Path()))
	}
	r.PanicHandler = func(ctx *fasthttp.RequestCtx, v any) {
		log.Error("panic in handler", "path", string(ctx.Path()), "panic", v)
		writeError(ctx, fasthttp.StatusInternalServerError, "internal_error", "internal error")
	}
	// Bodies are streamed: the front handler judges the headers (key,
	// route limit) before any of a body is read (limits.go).
	g.srv = &fasthttp.Server{
		Handler:               g.front(r.Handler),
		HeaderReceived:        g.headerReceived,
		ExpectHandler:         g.expect,
		StreamRequestBody:     true,
		Name:                  "zaits",
		ReadTimeout:           cfg.Limits.HeaderTimeout, // headerReceived sets the body's
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		ReadBufferSize:        MaxHeaderBytes,
		MaxRequestBodySize:    MaxBatchBytes,
		SecureErrorLogMessage: true,
		Logger:                serverLog{log},
		ErrorHandler:          requestErrorHandler,
	}
	return g, nil
}

// Start provisions the topics, then serves the ops endpoints and the API.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.ops.Start(); err != nil {
		return err
	}
	if err := broker.WaitAndEnsureTopics(ctx, g.cfg.Kafka, g.log); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.store.Start(ctx); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.recovery.jobs.Start(ctx); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway listener %s: %w", g.cfg.Listen, err)
	}
	// Test deliveries never reach this process's own ports.
	g.delivery.AddListener(ln.Addr().String())
	g.delivery.AddListener(g.ops.Addr())
	ln = newConnLimiter(ln, g.cfg.Limits.MaxConns, g.cfg.Limits.MaxConnsPerIP, g.reg)
	g.ln = ln
	g.serving.Store(true)
	go func() {
		if err := g.srv.Serve(ln); err != nil {
			g.log.Error("gateway API server stopped", "err", err)
		}
	}()
	g.log.Info("gateway serving", "api", ln.Addr().String(), "ops", g.ops.Addr())
	g.announceDevKey()
	return nil
}

// Addr is the bound API address.
func (g *Gateway) Addr() string {
	if g.ln == nil {
		return g.cfg.Listen
	}
	return g.ln.Addr().String()
}

// OpsAddr is the bound ops address.
func (g *Gateway) OpsAddr() string { return g.ops.Addr() }

// Stop stops accepting requests, lets in-flight ones finish until ctx ends,
// then stops the endpoint store and the ops server.
func (g *Gateway) Stop(ctx context.Context) error {
	g.serving.Store(false)
	var errs []error
	if g.ln != nil {
		errs = append(errs, g.srv.ShutdownWithContext(ctx))
	}
	errs = append(errs, g.ingest.close(), g.recovery.tasks.Close(), g.recovery.jobs.Stop())
	errs = append(errs, g.stopManagement(), g.store.Stop(), g.ops.Stop(ctx))
	return errors.Join(errs...)
}
