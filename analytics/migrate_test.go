package analytics

import (
	"context"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
	chschema "github.com/zaits/webhooks/schemas/clickhouse"
)

func TestMigrateIsIdempotentAndRecorded(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 2 {
		if err := Migrate(ctx, conn, db, 30, testLogger(t)); err != nil {
			t.Fatal(err)
		}
	}
	var version string
	if err := conn.QueryRow(ctx, sqlVersion.text).Scan(&version); err != nil {
		t.Fatal(err)
	}
	modern, err := chschema.Modern(version)
	if err != nil {
		t.Fatal(err)
	}
	all, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, m := range all {
		if !m.Modern || modern {
			want = append(want, uint32(m.Version))
		}
	}
	var got []uint32
	rows, err := conn.Query(ctx, "SELECT version FROM "+db+".schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	rows.Close()
	if !reflect.DeepEqual(got, want) { // once each, although Migrate ran twice
		t.Errorf("recorded migrations %v, want %v (server %s)", got, want, version)
	}
	var engine, sortingKey string
	if err := conn.QueryRow(ctx, "SELECT engine, create_table_query FROM system.tables WHERE database = ? AND name = 'attempts'", db).Scan(&engine, &sortingKey); err != nil {
		t.Fatal(err)
	}
	if engine != "ReplacingMergeTree" || !strings.Contains(sortingKey, "ORDER BY (account_id, endpoint_id, accepted_at, delivery_id, attempt)") {
		t.Errorf("attempts table: %s %s", engine, sortingKey)
	}
}

func TestMigrationFilesParse(t *testing.T) {
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 3 || ms[0].Version != 1 || ms[0].Modern || !ms[1].Modern || ms[2].Modern || len(ms[2].Statements) != 3 {
		t.Fatalf("migrations = %+v", ms)
	}
	f := func(in string, want []string) {
		t.Helper()
		if got := chschema.Split(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Split(%q) = %q, want %q", in, got, want)
		}
	}
	f("-- c\nSELECT 1\n;\n\nSELECT 2\n", []string{"SELECT 1", "SELECT 2"})
	f("-- only a comment\n;\n", nil)
	g := func(version string, want bool) {
		t.Helper()
		if got, err := chschema.Modern(version); err != nil || got != want {
			t.Errorf("Modern(%q) = %v, %v; want %v", version, got, err, want)
		}
	}
	g("18.16.1", false)
	g("19.17.4.11", false)
	g("20.1.2.4", true)
	g("26.9.2.1", true)
	if _, err := chschema.Modern("banana"); err == nil {
		t.Error("Modern(banana): no error")
	}
}

// Retention on servers without TTL drops whole expired months only.
func TestDropExpiredPartitions(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := Migrate(ctx, conn, db, 30, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	var b columns
	for i, accepted := range []time.Time{
		time.Date(2026, 9, 30, 23, 0, 0, 0, time.UTC), // month ended 50 days before now: dropped
		time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC), // 26 days old, and October ended 19 days ago: kept
		now.Add(-time.Hour),
	} {
		a := attemptOf("acc", "we", "evt"+string(rune('a'+i)), "t", 1, schemas.OutcomeSuccess, 200, 1, accepted)
		b.add(&a)
	}
	w := &writer{conn: conn, insert: sqlInsertAttempts.in(db)}
	if err := w.insertOnce(ctx, &b); err != nil {
		t.Fatal(err)
	}
	dropped, err := DropExpiredPartitions(ctx, conn, db, 30*24*time.Hour, now)
	if err != nil || !reflect.DeepEqual(dropped, []int{202609, 202609, 202609, 202609}) { // attempts, delivery_index, endpoint_last_attempt, endpoint_health
		t.Fatalf("dropped %v, %v; want [202609 202609 202609 202609]", dropped, err)
	}
	if again, err := DropExpiredPartitions(ctx, conn, db, 30*24*time.Hour, now); err != nil || len(again) != 0 {
		t.Errorf("second run dropped %v, %v", again, err)
	}
	h, err := NewHistory(conn, db, ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	list, total, err := h.Deliveries(ctx, "acc", "we", DeliveryFilter{})
	if err != nil || total != 2 || ids(list)[1] != "evtb" {
		t.Errorf("after retention: %v total %d, %v", ids(list), total, err)
	}
	var indexed uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".delivery_index").Scan(&indexed); err != nil || indexed != 2 {
		t.Errorf("delivery_index after retention: %d rows, %v", indexed, err)
	}
	var months []string
	rows, err := conn.Query(ctx, "SELECT DISTINCT toString(accepted_month) AS m FROM "+db+".endpoint_last_attempt ORDER BY m")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		months = append(months, m)
	}
	if rows.Close(); !reflect.DeepEqual(months, []string{"2026-10-01", "2026-11-01"}) {
		t.Errorf("endpoint_last_attempt months after retention: %v", months)
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(mutate func(*Config), want string) {
		t.Helper()
		c := Config{Kafka: &broker.Config{}}
		mutate(&c)
		err := c.Validate()
		if want == "" {
			if err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	f(func(*Config) {}, "")
	f(func(c *Config) { c.BatchRows = -1 }, "analytics.batch-rows")
	f(func(c *Config) { c.BatchInterval = -1 }, "analytics.batch-interval")
	f(func(c *Config) { c.Retention = time.Hour }, "analytics.retention")
	f(func(c *Config) { c.SuccessRateWindow = -time.Hour }, "analytics.success-rate-window")
	f(func(c *Config) { c.RetentionCheck = -1 }, "analytics.retention-check")
	f(func(c *Config) { c.ClickHouseDatabase = "a-b" }, "clickhouse.database")
	var c Config
	c.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	if c.BatchRows != 50000 || c.BatchInterval != time.Second || c.Retention != 30*24*time.Hour || c.SuccessRateWindow != 7*24*time.Hour || c.RetentionDays() != 30 {
		t.Errorf("defaults: %+v", c)
	}
	if z := (Config{}).WithDefaults(); z != c {
		t.Errorf("the zero value's defaults %+v differ from the flags' %+v", z, c)
	}
	c.Kafka = &broker.Config{TopicPrefix: "p"}
	if c.GroupID() != "p.analytics" {
		t.Errorf("GroupID() = %q", c.GroupID())
	}
}

func TestDecodeAttempt(t *testing.T) {
	f := func(in string, ok bool) {
		t.Helper()
		var a schemas.Attempt
		err := decodeAttempt([]byte(in), &a)
		if ok && err != nil || !ok && !errors.Is(err, errBadAttempt) {
			t.Errorf("decodeAttempt(%s) = %v, want ok=%v", in, err, ok)
		}
	}
	const id = `"delivery_id":"d","account_id":"a","endpoint_id":"e",`
	f(`{`+id+`"attempt":1,"outcome":"success","attempted_at":"2026-11-26T10:00:00Z"}`, true)
	f(`{`+id+`"attempt":1,"outcome":"retrying","attempted_at":"2026-11-26T10:00:00Z","next_retry_at":"2026-11-26T10:01:00Z","event_created":1764151200}`, true)
	f(`not json`, false)
	f(`{}`, false)
	f(`{`+id+`"attempt":0,"outcome":"success","attempted_at":"2026-11-26T10:00:00Z"}`, false)
	f(`{`+id+`"attempt":70000,"outcome":"success","attempted_at":"2026-11-26T10:00:00Z"}`, false)
	f(`{`+id+`"attempt":1,"outcome":"pending","attempted_at":"2026-11-26T10:00:00Z"}`, false)
	f(`{`+id+`"attempt":1,"outcome":"success"}`, false)
	f(`{`+id+`"attempt":1,"outcome":"success","attempted_at":"1960-01-01T00:00:00Z"}`, false)
	f(`{`+id+`"attempt":1,"outcome":"success","attempted_at":"2026-11-26T10:00:00Z","event_created":1764151200000}`, false)
	f(`{`+id+`"attempt":1,"outcome":"success","attempted_at":"2026-11-26T10:00:00Z","accepted_at":"2200-01-01T00:00:00Z"}`, false)
}
