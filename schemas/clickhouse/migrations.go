// Package clickhouse holds the ClickHouse DDL of the delivery log as ordered,
// numbered migrations, embedded in the binary. Nothing here does I/O: the
// analytics package applies them and records them in schema_migrations.
//
// File names are NNNN_name.sql (every server) or NNNN_name.modern.sql
// (only servers that pass Modern: ClickHouse 20.1 or newer). Statements in
// one file are separated by a line holding a lone ";". "{db}" stands for
// the configured database.
package clickhouse

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Migration is one numbered schema change.
type Migration struct {
	// Version is the file's number; migrations apply in ascending order.
	Version int
	// Name is the file name, for the migrations table and logs.
	Name string
	// Modern marks a migration that only runs on servers Modern accepts.
	Modern bool
	// Statements run in order; each has "{db}" where the database goes.
	Statements []string
}

var nameRE = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+(\.modern)?\.sql$`)

// Migrations returns every embedded migration in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name is not NNNN_name[.modern].sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, ok := seen[v]; ok {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		stmts := Split(string(body))
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s has no statements", e.Name())
		}
		out = append(out, Migration{Version: v, Name: e.Name(), Modern: m[2] != "", Statements: stmts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Split cuts a migration file into statements at lines holding a lone ";"
// and drops "--" comment lines and blank statements.
func Split(body string) []string {
	var stmts []string
	var cur []string
	flush := func() {
		if s := strings.TrimSpace(strings.Join(cur, "\n")); s != "" {
			stmts = append(stmts, s)
		}
		cur = cur[:0]
	}
	for line := range strings.SplitSeq(body, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == ";":
			flush()
		case strings.HasPrefix(t, "--"):
		default:
			cur = append(cur, line)
		}
	}
	flush()
	return stmts
}

// ModernMajor is the first ClickHouse major version with TTL and
// LowCardinality enabled by default; such servers get the modern extras.
const ModernMajor = 20

// Modern reports whether a server of version (SELECT version(), e.g.
// "18.16.1" or "26.9.2.1") supports the modern extras.
func Modern(version string) (bool, error) {
	major, _, ok := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if !ok || err != nil {
		return false, fmt.Errorf("clickhouse version %q is not major.minor…", version)
	}
	return n >= ModernMajor, nil
}
