package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ClickHouseServer is a private ClickHouse server of one test, on free
// loopback ports with its own config and data under t.TempDir(), for tests
// that stop and start a server (outages). The shared server is never touched.
type ClickHouseServer struct {
	t    testing.TB
	dir  string
	Addr string // native protocol, 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{}
}

// ClickHouseBinary is the server binary (ZAITS_CLICKHOUSE_SERVER, default /usr/sbin/clickhouse-server).
func ClickHouseBinary() string {
	return envOr("ZAITS_CLICKHOUSE_SERVER", "/usr/sbin/clickhouse-server")
}

// StartClickHouse starts a private server and stops it when the test ends.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	if _, err := os.Stat(ClickHouseBinary()); err != nil {
		t.Fatalf("clickhouse-server binary: %v (run `make stack` once, it installs it, or set ZAITS_CLICKHOUSE_SERVER)", err)
	}
	s := &ClickHouseServer{t: t, dir: t.TempDir()}
	tcp, http, inter := FreePort(t), FreePort(t), FreePort(t)
	s.Addr = "127.0.0.1:" + strconv.Itoa(tcp)
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "logs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>%[1]s/logs/server.log</log><errorlog>%[1]s/logs/server.err.log</errorlog><size>10M</size><count>1</count></logger>
    <http_port>%[2]d</http_port>
    <tcp_port>%[3]d</tcp_port>
    <interserver_http_port>%[4]d</interserver_http_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
`, s.dir, http, tcp, inter)
	users := `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again) and waits until it accepts connections.
func (s *ClickHouseServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("private clickhouse already running")
	}
	out, err := os.Create(filepath.Join(s.dir, "logs", "stdout.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(ClickHouseBinary(), "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start private clickhouse: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(s.done) }()
	Eventually(s.t, 60*time.Second, func() error {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "logs", "server.err.log"))
			return fmt.Errorf("private clickhouse exited: %s", log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c := Open(s.t, s.Addr, "default")
		defer c.Close()
		return c.Ping(ctx)
	})
}

// Stop stops the server (SIGTERM, SIGKILL after 20 s) and waits for it to exit.
func (s *ClickHouseServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
}
