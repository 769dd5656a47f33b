package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// PrivateKafka is a Kafka broker of one test's own, for tests that stop and
// start the server: the shared broker other tests use is never touched.
type PrivateKafka struct {
	Addr  string
	t     testing.TB
	env   []string
	stack string
}

// StartKafka starts a private single-node Kafka with deploy/local/kafka.sh on
// free ports and a temporary state folder (reusing the shared jars), and
// stops it when the test ends.
func StartKafka(t testing.TB) *PrivateKafka {
	t.Helper()
	root := repoRoot(t)
	state := os.Getenv("ZAITS_STATE_DIR")
	if state == "" {
		state = filepath.Join(root, ".state")
	}
	port, cport := FreePort(t), FreePort(t)
	k := &PrivateKafka{
		Addr:  fmt.Sprintf("127.0.0.1:%d", port),
		t:     t,
		stack: filepath.Join(root, "deploy", "local", "kafka.sh"),
		env: append(os.Environ(),
			"ZAITS_STATE_DIR="+t.TempDir(),
			"ZAITS_KAFKA_LIBS="+filepath.Join(state, "kafka", "libs"),
			fmt.Sprintf("ZAITS_KAFKA_PORT=%d", port),
			fmt.Sprintf("ZAITS_KAFKA_CONTROLLER_PORT=%d", cport),
			"ZAITS_KAFKA_HEAP=384m"),
	}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

// Start starts (or restarts) the broker and waits until it answers.
func (k *PrivateKafka) Start() {
	k.t.Helper()
	k.run("start")
}

// Stop stops the broker (a no-op when it is not running).
func (k *PrivateKafka) Stop() {
	k.t.Helper()
	k.run("stop")
}

func (k *PrivateKafka) run(verb string) {
	k.t.Helper()
	cmd := exec.Command(k.stack, verb)
	cmd.Env = k.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		k.t.Fatalf("kafka.sh %s: %v\n%s", verb, err, out)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
