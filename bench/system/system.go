// Package system starts a private instance of the Zaits system (the zaits
// binary, subcommand all) for a scenario and stops it afterwards: its own
// topic prefix, consumer groups, ClickHouse database and loopback ports, a
// freshly minted service token and account API key, and delivery to
// loopback receivers allowed. Scenarios that need extra settings (the
// failures scenario's retry schedule in seconds) pass them as flags.
package system

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/broker"
)

// Config says which binary to start against which servers.
type Config struct {
	// Binary is the zaits binary. Default ".state/bin/zaits" (make build).
	Binary string
	// Kafka is the broker configuration; its brokers and partition counts
	// are used, the prefix is replaced by a private one.
	Kafka *broker.Config
	// ClickHouseAddr is the ClickHouse native address. Default 127.0.0.1:9000.
	ClickHouseAddr string
	// Account owns the minted API key and the bench's events. Default "acct_bench".
	Account string
	// Flags are extra flags for `zaits all`, after the ones Start sets (a
	// later flag wins), e.g. -dispatcher.retry-schedule=1s,2s,3s,4s.
	Flags []string
	// Log receives the system's own log lines (stderr); nil discards them.
	Log io.Writer
	// ReadyTimeout bounds waiting for every component's /readyz. Default 90s.
	ReadyTimeout time.Duration
}

// System is a running private instance.
type System struct {
	// GatewayURL is the public API, e.g. http://127.0.0.1:41234.
	GatewayURL string
	// ServiceToken may publish events for any account (Bearer).
	ServiceToken string
	// APIKey is Account's management API key (Bearer).
	APIKey string
	// Account is the account of APIKey.
	Account string
	// TopicPrefix and Database are the private Kafka prefix and ClickHouse database.
	TopicPrefix, Database string
	// Args are the arguments the binary was started with (tokens are hashes there).
	Args []string

	cmd    *exec.Cmd
	kafka  broker.Config
	chAddr string
	exited chan error
}

// Start starts the system and waits until every component is ready.
func Start(ctx context.Context, cfg Config) (*System, error) {
	if cfg.Binary == "" {
		cfg.Binary = filepath.Join(".state", "bin", "zaits")
	}
	if cfg.ClickHouseAddr == "" {
		cfg.ClickHouseAddr = "127.0.0.1:9000"
	}
	if cfg.Account == "" {
		cfg.Account = "acct_bench"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 90 * time.Second
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("zaits binary: %w (build it with `make build`)", err)
	}
	ports, err := FreePorts(5)
	if err != nil {
		return nil, err
	}
	token, tokenEntry, err := gateway.MintKey("bench", true)
	if err != nil {
		return nil, err
	}
	key, keyEntry, err := gateway.MintKey(cfg.Account, false)
	if err != nil {
		return nil, err
	}
	aesKey := make([]byte, 32)
	_, _ = rand.Read(aesKey)
	suffix := broker.RandomSuffix(8)
	s := &System{
		GatewayURL: "http://" + ports[0], ServiceToken: token, APIKey: key, Account: cfg.Account,
		TopicPrefix: "bench-" + suffix, Database: "bench_" + suffix,
		kafka: *cfg.Kafka, chAddr: cfg.ClickHouseAddr, exited: make(chan error, 1),
	}
	s.kafka.TopicPrefix = s.TopicPrefix
	s.Args = append([]string{"all",
		"-kafka.brokers=" + cfg.Kafka.Brokers,
		"-kafka.topic-prefix=" + s.TopicPrefix,
		"-dispatcher.group=" + s.TopicPrefix + ".dispatcher",
		"-clickhouse.addr=" + cfg.ClickHouseAddr,
		"-clickhouse.database=" + s.Database,
		"-gateway.listen=" + ports[0],
		"-gateway.ops-listen=" + ports[1],
		"-dispatcher.ops-listen=" + ports[2],
		"-analytics.ops-listen=" + ports[3],
		"-router.ops-listen=" + ports[4],
		"-gateway.api-keys=" + keyEntry,
		"-gateway.service-tokens=" + tokenEntry,
		"-gateway.allow-http", "-gateway.allow-private",
		"-delivery.allow-networks=127.0.0.0/8",
		"-gateway.rate-limit=1000000", "-gateway.rate-burst=1000000",
		"-log.format=json", "-log.level=warn",
	}, cfg.Flags...)
	for name, n := range cfg.Kafka.Partitions {
		s.Args = append(s.Args, fmt.Sprintf("-kafka.partitions.%s=%d", name, n))
	}
	s.cmd = exec.Command(cfg.Binary, s.Args...)
	s.cmd.Env = append(os.Environ(), "ZAITS_ENDPOINTS_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(aesKey))
	s.cmd.Stdout, s.cmd.Stderr = cfg.Log, cfg.Log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	if err := s.waitReady(ctx, cfg.ReadyTimeout, ports[1:]); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return nil, errors.Join(err, s.Stop(sctx))
	}
	return s, nil
}

// waitReady polls every ops port's /readyz until all answer 200 and the
// public API answers.
func (s *System) waitReady(ctx context.Context, timeout time.Duration, ops []string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		last = nil
		for _, addr := range ops {
			resp, err := client.Get("http://" + addr + "/readyz")
			if err != nil {
				last = err
				break
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				last = fmt.Errorf("%s/readyz: %d %s", addr, resp.StatusCode, strings.TrimSpace(string(body)))
				break
			}
		}
		if last == nil {
			// The public API too: its contract is served without credentials.
			resp, err := client.Get(s.GatewayURL + "/v1/openapi.json")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					select {
					case err := <-s.exited:
						s.exited <- err
						return fmt.Errorf("zaits exited while it looked ready: %v", err)
					default:
						return nil
					}
				}
				err = fmt.Errorf("%s/v1/openapi.json: %d", s.GatewayURL, resp.StatusCode)
			}
			last = err
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			return fmt.Errorf("zaits exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("zaits not ready within %s: %w", timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pid is the process id of the running zaits (to sample its memory).
func (s *System) Pid() int { return s.cmd.Process.Pid }

// Stop stops the process (SIGTERM, then SIGKILL when ctx ends) and removes
// its topics and database.
func (s *System) Stop(ctx context.Context) error {
	var errs []error
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-ctx.Done():
			_ = s.cmd.Process.Kill()
			<-s.exited
			errs = append(errs, errors.New("zaits did not stop on SIGTERM in time: killed"))
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs = append(errs, Remove(cctx, &s.kafka, s.chAddr, s.Database))
	return errors.Join(errs...)
}

// Remove deletes a private instance's topics (kc's prefix) and its
// ClickHouse database db at chAddr (an unreachable ClickHouse is skipped).
func Remove(ctx context.Context, kc *broker.Config, chAddr, db string) error {
	var errs []error
	if err := broker.DeleteTopics(ctx, kc); err != nil {
		errs = append(errs, fmt.Errorf("delete topics %s.*: %w", kc.TopicPrefix, err))
	}
	if conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Protocol: clickhouse.Native, DialTimeout: 3 * time.Second}); err == nil {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", db, err))
		}
		conn.Close()
	}
	return errors.Join(errs...)
}

// FreePorts returns n loopback addresses that were free a moment ago.
func FreePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}
