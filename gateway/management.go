package gateway

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/schemas"
)

// initManagement prepares the management API: credentials, the rate
// limiter, the development key, the test-delivery client, the attempts
// writer and the delivery-log reader.
func (g *Gateway) initManagement() error {
	accounts, err := parseCredentials("gateway.api-keys", g.cfg.APIKeys)
	if err != nil {
		return err
	}
	services, err := parseCredentials("gateway.service-tokens", g.cfg.ServiceTokens)
	if err != nil {
		return err
	}
	if g.cfg.Dev {
		key, entry, err := MintKey(DevAccount, false)
		if err != nil {
			return err
		}
		dev, err := parseCredentials("dev", entry)
		if err != nil {
			return err
		}
		g.devKey = key
		accounts = append(accounts, dev...)
	}
	g.keys = newKeyring(accounts, services)
	if len(accounts) == 0 {
		g.log.Warn("no API keys configured (gateway.api-keys): every management request will answer 401; mint one with `zaits mint-key -account <id>`")
	}
	g.limiter = newLimiter(g.cfg.RateLimit, g.cfg.RateBurst)
	g.authFailures = newAuthFailures(g.cfg.Limits.AuthFailureRate, g.cfg.Limits.AuthFailureBurst)
	g.authRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zaits_gateway_auth_refused_total",
		Help: "Requests refused for their key, by answer: 401 (missing or wrong), 429 (the client address is over -gateway.auth-failure-rate)."}, []string{"answer"})
	g.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zaits_gateway_api_requests_total", Help: "Management API requests by route and answer status."}, []string{"route", "status"})
	g.apiSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "zaits_gateway_api_request_seconds", Help: "Management API request duration by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"})
	if g.reg != nil {
		g.reg.MustRegister(g.apiRequests, g.apiSeconds, g.authRefused)
	}

	var dc dispatcher.ClientConfig
	if g.cfg.Delivery != nil {
		dc = *g.cfg.Delivery
	}
	dc.Dev = dc.Dev || g.cfg.Dev
	if g.delivery, err = dispatcher.NewClient(dc, g.reg); err != nil {
		return fmt.Errorf("gateway: test delivery client: %w", err)
	}
	g.attempts = g.cfg.Kafka.NewWriter(g.cfg.Kafka.Topic(schemas.TopicAttempts), time.Millisecond)

	if h := g.cfg.History; h != nil {
		conn, err := analytics.Open(*h, h.ClickHouseDatabase)
		if err != nil {
			return fmt.Errorf("gateway: delivery log: %w", err)
		}
		if g.history, err = analytics.NewHistory(conn, h.ClickHouseDatabase, g.reg); err != nil {
			return errors.Join(fmt.Errorf("gateway: delivery log: %w", err), conn.Close())
		}
		g.historyConn = conn.Close
	}
	return nil
}

// DevKey is the development account's API key (Dev only; new at every start).
func (g *Gateway) DevKey() string { return g.devKey }

// announceDevKey prints the development key and a request to try it.
func (g *Gateway) announceDevKey() {
	if g.devKey == "" {
		return
	}
	g.log.Warn("development mode: a development account and API key exist; never use -dev in production", "account", DevAccount)
	fmt.Fprintf(os.Stderr, "\n  Development API key (account %s, new at every start):\n\n    %s\n\n  Try it:\n\n    curl -H \"Authorization: Bearer %s\" http://%s/v1/webhooks/events\n\n",
		DevAccount, g.devKey, g.devKey, g.Addr())
}

// stopManagement closes the attempts writer and the delivery-log connection.
func (g *Gateway) stopManagement() error {
	var errs []error
	if g.attempts != nil {
		errs = append(errs, g.attempts.Close())
	}
	if g.historyConn != nil {
		errs = append(errs, g.historyConn())
	}
	return errors.Join(errs...)
}
