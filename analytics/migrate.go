package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/zaits/webhooks/schemas/clickhouse"
)

// Migrate creates the database if needed and applies, in order, every
// migration of schemas/clickhouse not yet recorded in schema_migrations,
// recording each one after it ran. Modern-only migrations run when the
// server is ClickHouse 20.1 or newer, where the retention TTL is also set
// to retentionDays (older servers drop expired partitions instead, see
// DropExpiredPartitions). It is idempotent: every statement is, too, so
// two processes migrating at once do no harm.
func Migrate(ctx context.Context, conn driver.Conn, db string, retentionDays int, log *slog.Logger) error {
	var version string
	if err := conn.QueryRow(ctx, sqlVersion.text).Scan(&version); err != nil {
		return fmt.Errorf("clickhouse version: %w", err)
	}
	modern, err := chschema.Modern(version)
	if err != nil {
		return err
	}
	migrations, err := chschema.Migrations()
	if err != nil {
		return err
	}
	for _, stmt := range []statement{sqlCreateDatabase, sqlCreateMigrations} {
		if err := conn.Exec(ctx, stmt.in(db)); err != nil {
			return fmt.Errorf("migrations table in %s: %w", db, err)
		}
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, sqlAppliedMigrations.in(db))
	if err != nil {
		return fmt.Errorf("read %s.schema_migrations: %w", db, err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read %s.schema_migrations: %w", db, err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s.schema_migrations: %w", db, err)
	}
	for _, m := range migrations {
		if applied[uint32(m.Version)] || (m.Modern && !modern) {
			continue
		}
		for _, stmt := range m.Statements {
			if err := conn.Exec(ctx, inDB(stmt, db)); err != nil {
				if columnsExist(err, stmt) {
					// Applied before a crash kept it from being recorded.
					log.Warn("clickhouse migration found applied", "migration", m.Name, "err", err)
					continue
				}
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
		}
		if err := record(ctx, conn, db, m); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		log.Info("clickhouse migration applied", "migration", m.Name, "database", db, "server", version)
	}
	if modern {
		for _, stmt := range []statement{sqlRetentionTTL, sqlRetentionTTLIndex} {
			if err := conn.Exec(ctx, stmt.in(db), retentionDays); err != nil {
				return fmt.Errorf("retention ttl: %w", err)
			}
		}
	}
	return nil
}

func record(ctx context.Context, conn driver.Conn, db string, m chschema.Migration) error {
	b, err := conn.PrepareBatch(ctx, sqlRecordMigration.in(db))
	if err != nil {
		return err
	}
	if err := b.Append(uint32(m.Version), m.Name, time.Now()); err != nil {
		_ = b.Abort()
		return err
	}
	return b.Send()
}

// errColumnExists is ClickHouse's ILLEGAL_COLUMN exception: among others,
// ALTER TABLE ADD COLUMN of a column that exists (18.16 has no ADD COLUMN
// IF NOT EXISTS).
const errColumnExists = 44

// columnsExist reports whether err is an ADD COLUMN statement failing
// because its columns are there already.
func columnsExist(err error, stmt string) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == errColumnExists && strings.Contains(stmt, "ADD COLUMN")
}
