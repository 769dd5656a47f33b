package analytics

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	chschema "github.com/zaits/webhooks/schemas/clickhouse"
)

// venvPython is the interpreter of the virtualenv `make chdb` creates.
func venvPython() string {
	state := os.Getenv("ZAITS_STATE_DIR")
	if state == "" {
		state = filepath.Join("..", ".state")
	}
	return filepath.Join(state, "venv", "bin", "python")
}

// The same statements the Go code sends to 18.16 in the other tests run on
// ClickHouse 26.x (chdb-core): every migration, modern ones included, and
// every query, with sample data and duplicates, answers asserted by
// schemas/clickhouse/check_modern.py.
func TestStatementsRunOnModernClickHouse(t *testing.T) {
	py := venvPython()
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("the chdb virtualenv is missing (%v): run `make chdb` (creates .state/venv with chdb-core)", err)
	}
	migrations, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var ms []map[string]any
	for _, m := range migrations {
		ms = append(ms, map[string]any{"version": m.Version, "name": m.Name, "modern": m.Modern, "statements": m.Statements})
	}
	byName := map[string]string{}
	for _, s := range statements {
		if _, dup := byName[s.name]; dup {
			t.Fatalf("two statements are named %q", s.name)
		}
		byName[s.name] = s.text
	}
	doc, err := json.Marshal(map[string]any{"migrations": ms, "statements": byName})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "statements.json")
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("..", "schemas", "clickhouse", "check_modern.py"), file)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check_modern.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
