package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Cluster controls the local 3-node Kafka cluster through
// deploy/local/kafka.sh (ZAITS_KAFKA_NODES=3): which node to kill, killing
// it with SIGKILL and starting it again. Node n has node.id n and listens
// on the n-th address of Brokers.
type Cluster struct {
	// Script is deploy/local/kafka.sh.
	Script string
	// Env is the script's environment (ZAITS_STATE_DIR, ports, jars);
	// ZAITS_KAFKA_NODES=3 is added.
	Env []string
	// Brokers is the bootstrap list, from `kafka.sh brokers`.
	Brokers []string
}

// NewCluster asks the script for the cluster's brokers and checks every
// node answers.
func NewCluster(script string, env []string) (*Cluster, error) {
	// A node restarting under the run's load can take minutes on a small machine.
	c := &Cluster{Script: script, Env: append(append([]string{"ZAITS_KAFKA_START_TIMEOUT=300"}, env...), "ZAITS_KAFKA_NODES=3")}
	out, err := c.run("brokers")
	if err != nil {
		return nil, err
	}
	c.Brokers = strings.Split(strings.TrimSpace(out), ",")
	if _, err := c.run("status"); err != nil {
		return nil, fmt.Errorf("the 3-node cluster is not running (start it with `make cluster`): %w", err)
	}
	return c, nil
}

func (c *Cluster) run(args ...string) (string, error) {
	cmd := exec.Command(c.Script, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", c.Script, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Kill sends SIGKILL to node n.
func (c *Cluster) Kill(n int) error {
	_, err := c.run("kill-node", strconv.Itoa(n))
	return err
}

// Start starts node n and waits until it answers.
func (c *Cluster) Start(n int) error {
	_, err := c.run("start-node", strconv.Itoa(n))
	return err
}

// QuorumLeader is the node leading the controller quorum now (the active controller).
func (c *Cluster) QuorumLeader() (int, error) {
	out, err := c.run("quorum-leader")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// Leaders counts the partitions of topic each node leads, read from the
// first broker that answers.
func (c *Cluster) Leaders(ctx context.Context, topic string) (map[int]int, error) {
	d := kafka.Dialer{Timeout: 3 * time.Second, ClientID: "zaits-chaos"}
	var last error
	for _, b := range c.Brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		parts, err := conn.ReadPartitions(topic)
		conn.Close()
		if err != nil {
			last = err
			continue
		}
		out := map[int]int{}
		for _, p := range parts {
			out[p.Leader.ID]++
		}
		return out, nil
	}
	return nil, fmt.Errorf("partition leaders of %s: %w", topic, last)
}

// MostLeader is the node leading most partitions of topic (the lowest id on a tie).
func (c *Cluster) MostLeader(ctx context.Context, topic string) (int, map[int]int, error) {
	l, err := c.Leaders(ctx, topic)
	if err != nil {
		return 0, nil, err
	}
	ids := make([]int, 0, len(l))
	for id := range l {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	best := -1
	for _, id := range ids {
		if best < 0 || l[id] > l[best] {
			best = id
		}
	}
	return best, l, nil
}

// Coordinator is the node coordinating consumer group group.
func (c *Cluster) Coordinator(ctx context.Context, group string) (int, error) {
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 5 * time.Second}
	resp, err := cl.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err != nil {
		return 0, fmt.Errorf("coordinator of %s: %w", group, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("coordinator of %s: %w", group, resp.Error)
	}
	return resp.Coordinator.NodeID, nil
}
