package analytics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DropExpiredPartitions drops every monthly partition (toYYYYMM(accepted_at))
// of the tables in partitionedTables (attempts and its rollups) whose whole month ended before
// now-retention, and returns the dropped partitions (YYYYMM, per table in
// turn). This is retention on servers without TTL (18.16); on modern
// servers the TTL set by Migrate does the same row by row, and this is
// harmless there. Data is kept up to one month longer than retention,
// never shorter.
func DropExpiredPartitions(ctx context.Context, conn driver.Conn, db string, retention time.Duration, now time.Time) ([]int, error) {
	cutoff := now.UTC().Add(-retention)
	var dropped []int
	for _, table := range partitionedTables {
		expired, err := expiredPartitions(ctx, conn, db, table, cutoff)
		if err != nil {
			return dropped, err
		}
		for _, ym := range expired {
			if err := conn.Exec(ctx, fmt.Sprintf(sqlDropPartition.in(db), table, ym)); err != nil {
				return dropped, fmt.Errorf("drop partition %d of %s.%s: %w", ym, db, table, err)
			}
			dropped = append(dropped, ym)
		}
	}
	return dropped, nil
}

func expiredPartitions(ctx context.Context, conn driver.Conn, db, table string, cutoff time.Time) ([]int, error) {
	rows, err := conn.Query(ctx, sqlPartitions.text, db, table)
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	var expired []int
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list partitions of %s.%s: %w", db, table, err)
		}
		ym, err := strconv.Atoi(p)
		if err != nil || ym < 197001 || ym%100 < 1 || ym%100 > 12 {
			continue // not a partition this schema makes
		}
		monthEnd := time.Date(ym/100, time.Month(ym%100)+1, 1, 0, 0, 0, 0, time.UTC)
		if !monthEnd.After(cutoff) {
			expired = append(expired, ym)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions of %s.%s: %w", db, table, err)
	}
	return expired, nil
}
