package chaos

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/zaits/webhooks/bench/system"
)

// ClickHouse is a private ClickHouse server for the chaos runs, started
// with deploy/local/clickhouse.sh on free ports with a state folder of its
// own, so the clickhouse case can stop and start it without touching the
// shared server.
type ClickHouse struct {
	// Addr is the native protocol address.
	Addr   string
	script string
	env    []string
}

// StartClickHouse starts the private server; dir holds its state.
func StartClickHouse(script, dir string) (*ClickHouse, error) {
	ports, err := system.FreePorts(2)
	if err != nil {
		return nil, err
	}
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	c := &ClickHouse{Addr: ports[0], script: script, env: append(os.Environ(),
		"ZAITS_STATE_DIR="+dir, "ZAITS_CLICKHOUSE_PORT="+port(ports[0]), "ZAITS_CLICKHOUSE_HTTP_PORT="+port(ports[1]))}
	return c, c.Start()
}

// Start starts the server (again) and waits until it answers.
func (c *ClickHouse) Start() error { return c.run("start") }

// Stop stops the server.
func (c *ClickHouse) Stop() error { return c.run("stop") }

func (c *ClickHouse) run(verb string) error {
	cmd := exec.Command(c.script, verb)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", c.script, verb, err, strings.TrimSpace(string(out)))
	}
	return nil
}
