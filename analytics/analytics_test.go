package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/testenv"
)

// The server in CI is ClickHouse 18.16: native protocol, explicit INSERT columns.
func TestInsertAndSelectThroughRealClickHouse(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".t (id String, n UInt32, at DateTime) ENGINE = MergeTree() ORDER BY (id, at)"); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".t (id, n, at)")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for i := range 1000 {
		if err := batch.Append("k", uint32(i), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var count, sum uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(n) FROM "+db+".t WHERE id = ?", "k").Scan(&count, &sum); err != nil {
		t.Fatal(err)
	}
	if count != 1000 || sum != 999*1000/2 {
		t.Fatalf("count=%d sum=%d", count, sum)
	}
}
