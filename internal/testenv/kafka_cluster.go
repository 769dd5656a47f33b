package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaCluster is a private 3-node Kafka KRaft cluster (each node broker and
// controller, a 3-voter quorum) started with deploy/local/kafka.sh
// (ZAITS_KAFKA_NODES=3) on free ports with a temporary state folder and the
// shared jars, for tests that kill brokers. Node n has node.id n and
// listens on Brokers[n-1].
type KafkaCluster struct {
	Brokers []string
	t       testing.TB
	env     []string
	stack   string
}

// StartKafkaCluster starts the cluster, waits until every node is a live
// broker, and stops it when the test ends.
func StartKafkaCluster(t testing.TB) *KafkaCluster {
	t.Helper()
	root := repoRoot(t)
	state := os.Getenv("ZAITS_STATE_DIR")
	if state == "" {
		state = filepath.Join(root, ".state")
	}
	var ports, cports []string
	for range 3 {
		ports = append(ports, strconv.Itoa(FreePort(t)))
		cports = append(cports, strconv.Itoa(FreePort(t)))
	}
	c := &KafkaCluster{
		t:     t,
		stack: filepath.Join(root, "deploy", "local", "kafka.sh"),
		env: append(os.Environ(),
			"ZAITS_STATE_DIR="+t.TempDir(),
			"ZAITS_KAFKA_LIBS="+filepath.Join(state, "kafka", "libs"),
			"ZAITS_KAFKA_NODES=3",
			"ZAITS_KAFKA_CLUSTER_PORTS="+strings.Join(ports, ","),
			"ZAITS_KAFKA_CLUSTER_CONTROLLER_PORTS="+strings.Join(cports, ","),
			"ZAITS_KAFKA_HEAP=384m"),
	}
	for _, p := range ports {
		c.Brokers = append(c.Brokers, "127.0.0.1:"+p)
	}
	t.Cleanup(func() { c.run("stop") })
	c.run("start")
	return c
}

// Addr is the bootstrap list, comma-separated (the -kafka.brokers flag).
func (c *KafkaCluster) Addr() string { return strings.Join(c.Brokers, ",") }

// Kill sends SIGKILL to node n (a crash: no clean shutdown).
func (c *KafkaCluster) Kill(n int) {
	c.t.Helper()
	c.run("kill-node", strconv.Itoa(n))
}

// StartNode starts node n again and waits until it answers.
func (c *KafkaCluster) StartNode(n int) {
	c.t.Helper()
	c.run("start-node", strconv.Itoa(n))
}

// Coordinator returns the node coordinating consumer group group.
func (c *KafkaCluster) Coordinator(group string) int {
	c.t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 10 * time.Second}
	var node int
	Eventually(c.t, 30*time.Second, func() error {
		resp, err := cl.FindCoordinator(context.Background(), &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
		if err == nil {
			err = resp.Error
		}
		if err != nil {
			return fmt.Errorf("coordinator of %s: %w", group, err)
		}
		node = resp.Coordinator.NodeID
		return nil
	})
	return node
}

// QuorumLeader returns the node leading the controller quorum (the active controller).
func (c *KafkaCluster) QuorumLeader() int {
	c.t.Helper()
	out := c.run("quorum-leader")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		c.t.Fatalf("kafka.sh quorum-leader: %q: %v", out, err)
	}
	return n
}

func (c *KafkaCluster) run(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.stack, args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("kafka.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
