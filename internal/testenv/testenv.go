// Package testenv gives integration tests the real servers: a fresh,
// uniquely named Kafka topic set or ClickHouse database per test, removed
// afterwards, and Eventually, the one polling helper used instead of sleeps.
//
// The servers are the ones `make test` starts (deploy/local/stack.sh).
// Their addresses come from ZAITS_TEST_KAFKA (default 127.0.0.1:9092) and
// ZAITS_TEST_CLICKHOUSE (default 127.0.0.1:9000). When a server cannot be
// reached the test fails with instructions; it never skips.
package testenv

import (
	"context"

	"net"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/zaits/webhooks/internal/broker"
)

// KafkaAddr is the broker integration tests use.
func KafkaAddr() string { return envOr("ZAITS_TEST_KAFKA", "127.0.0.1:9092") }

// ClickHouseAddr is the ClickHouse native address integration tests use.
func ClickHouseAddr() string { return envOr("ZAITS_TEST_CLICKHOUSE", "127.0.0.1:9000") }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func requireReachable(t testing.TB, what, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("%s is not reachable at %s (%v).\nStart the local stack with `make stack` (or `deploy/local/stack.sh start`), "+
			"or point ZAITS_TEST_KAFKA / ZAITS_TEST_CLICKHOUSE at running servers.", what, addr, err)
	}
	c.Close()
}

// Kafka returns a broker configuration with a fresh topic prefix whose topics
// are all created (default partition counts, overridable through mutate)
// and deleted when the test ends.
func Kafka(t testing.TB, mutate ...func(*broker.Config)) *broker.Config {
	t.Helper()
	requireReachable(t, "Kafka", KafkaAddr())
	cfg := KafkaFor("test-" + broker.RandomSuffix(10))
	for _, m := range mutate {
		m(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test kafka config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, cfg); err != nil {
		t.Fatalf("creating topics %s.*: %v", cfg.TopicPrefix, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := broker.DeleteTopics(ctx, cfg); err != nil {
			t.Logf("deleting topics %s.*: %v", cfg.TopicPrefix, err)
		}
	})
	return cfg
}

// KafkaFor is the broker configuration Kafka makes for the topic prefix
// (without creating anything): what a child process of a test uses to
// reach the same topics.
func KafkaFor(prefix string) *broker.Config {
	cfg := broker.Defaulted(&broker.Config{Brokers: KafkaAddr(), TopicPrefix: prefix, StartupTimeout: 30 * time.Second})
	for name := range cfg.Partitions {
		cfg.Partitions[name] = min(cfg.Partitions[name], 4)
	}
	return cfg
}

// ClickHouse returns a connection to a fresh database, dropped when the test ends.
func ClickHouse(t testing.TB) (driver.Conn, string) {
	t.Helper()
	addr := ClickHouseAddr()
	requireReachable(t, "ClickHouse", addr)
	db := "test_" + broker.RandomSuffix(12)
	admin := Open(t, addr, "default")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("create database %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			t.Logf("drop database %s: %v", db, err)
		}
	})
	return Open(t, addr, db), db
}

// Open connects to ClickHouse over the native protocol; the connection is closed when the test ends.
func Open(t testing.TB, addr, db string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: db, Username: "default"},
		Protocol:    clickhouse.Native,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("clickhouse open %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Eventually calls f every 20 ms until it returns nil, and fails the test
// with f's last error if that does not happen within timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
