package dispatcher_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Environment of the dispatcher child process (the test binary re-executed).
const (
	envChildPrefix = "ZAITS_TEST_DISPATCHER_CHILD_PREFIX"
	envChildBuffer = "ZAITS_TEST_DISPATCHER_CHILD_BUFFER"
)

func TestMain(m *testing.M) {
	if prefix := os.Getenv(envChildPrefix); prefix != "" {
		os.Exit(runChild(prefix))
	}
	os.Exit(m.Run())
}

// runChild runs a dispatcher until SIGTERM (or SIGKILL, which is the point).
func runChild(prefix string) int {
	cfg := testConfig(testenv.KafkaFor(prefix))
	cfg.PartitionBuffer, _ = strconv.Atoi(os.Getenv(envChildBuffer))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := dispatcher.New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		log.Error("child", "err", err)
		return 1
	}
	return testenv.ServeUntilSIGTERM(d, log)
}

type child struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startChildB starts a dispatcher child whose output is discarded.
func startChildB(b testing.TB, prefix string, buffer int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), envChildPrefix+"="+prefix, fmt.Sprintf("%s=%d", envChildBuffer, buffer))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		cmd.Wait()                          //nolint:errcheck
	})
	return cmd
}

func startChild(t *testing.T, prefix string, buffer int) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")}
	c.cmd.Env = append(os.Environ(), envChildPrefix+"="+prefix, fmt.Sprintf("%s=%d", envChildBuffer, buffer))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill() //nolint:errcheck
			c.cmd.Wait()         //nolint:errcheck
		}
		if t.Failed() {
			t.Logf("dispatcher child (pid %d) output:\n%s", c.cmd.Process.Pid, c.out.String())
		}
	})
	return c
}

// ledgerCheck verifies every task arrived at least once and returns the
// number of duplicates; every arrival of a task carries the same delivery id.
func ledgerCheck(t *testing.T, recv *receiver, eps []*endpoint.Entry, perEndpoint int) (unique, dups int) {
	t.Helper()
	for i, e := range eps {
		ids := map[int]string{}
		for _, a := range recv.ledger(fmt.Sprintf("c%02d", i)) {
			if id, ok := ids[a.seq]; ok {
				dups++
				if id != a.deliveryID {
					t.Errorf("duplicate of %s seq %d carries delivery id %s, first %s", e.ID, a.seq, a.deliveryID, id)
				}
				continue
			}
			ids[a.seq] = a.deliveryID
		}
		unique += len(ids)
	}
	return unique, dups
}

func TestKill9UnderLoadLosesNothing(t *testing.T) {
	const endpoints, perEndpoint, buffer = 40, 150, 300
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	var eps []*endpoint.Entry
	for i := range endpoints {
		eps = append(eps, recv.add(t, store, fmt.Sprintf("c%02d", i), "", nil))
	}
	newProducer(t, kc).send(t, interleaved(perEndpoint, eps)...)
	total := endpoints * perEndpoint

	first := startChild(t, kc.TopicPrefix, buffer)
	var startedAt time.Time
	eventually(t, 60*time.Second, func() error {
		if n := recv.total.Load(); n == 0 {
			return fmt.Errorf("no delivery yet")
		} else if startedAt.IsZero() {
			startedAt = time.Now()
		}
		if n := recv.total.Load(); n < int64(total)/3 {
			return fmt.Errorf("%d of %d delivered before the kill", n, total)
		}
		return nil
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.cmd.Wait() //nolint:errcheck
	killedAt := time.Now()
	before := recv.total.Load()
	rate := float64(before) / killedAt.Sub(startedAt).Seconds()
	if before >= int64(total) {
		t.Fatalf("all %d delivered before the kill: the test needs a larger load", total)
	}

	startChild(t, kc.TopicPrefix, buffer)
	eventually(t, 90*time.Second, func() error {
		if u, _ := ledgerCheck(t, recv, eps, perEndpoint); u < total {
			return fmt.Errorf("%d of %d distinct tasks delivered", u, total)
		}
		return nil
	})
	unique, dups := ledgerCheck(t, recv, eps, perEndpoint)
	// The window of tasks delivered but not committed: the read-ahead of every
	// partition plus what finishes between two commits (twice the interval, for slack).
	window := kc.Partitions[schemas.TopicDeliveries]*buffer + int(rate*2*testConfig(kc).CommitInterval.Seconds())
	t.Logf("killed after %d deliveries (%.0f/s); %d distinct, %d duplicates (window %d)", before, rate, unique, dups, window)
	if dups > window {
		t.Fatalf("%d duplicates exceed the in-flight window %d", dups, window)
	}
}

func TestGracefulStopAndRebalanceLoseNothing(t *testing.T) {
	const endpoints, perEndpoint = 40, 100
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	var eps []*endpoint.Entry
	for i := range endpoints {
		eps = append(eps, recv.add(t, store, fmt.Sprintf("c%02d", i), "", nil))
	}
	cfg := testConfig(kc)
	a := startDispatcher(t, cfg)
	startDispatcher(t, cfg)
	newProducer(t, kc).send(t, interleaved(perEndpoint, eps)...)
	total := endpoints * perEndpoint
	eventually(t, 60*time.Second, func() error {
		if n := recv.total.Load(); n < int64(total)/4 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		if u, _ := ledgerCheck(t, recv, eps, perEndpoint); u < total {
			return fmt.Errorf("%d of %d distinct tasks delivered", u, total)
		}
		return nil
	})
	_, dups := ledgerCheck(t, recv, eps, perEndpoint)
	t.Logf("%d duplicates after a graceful stop and rebalance", dups)
	if dups != 0 {
		t.Fatalf("a graceful stop finishes and commits its work: %d duplicates", dups)
	}
}

// TestKill9WhileAnEndpointLagsRedeliversNoFinishedTask: one endpoint is slow,
// so its partition's committed offset stays at its oldest unfinished task
// while the other endpoints finish everything. A kill -9 then used to
// re-deliver every other endpoint's task on that partition since then (the
// committed offset is the lowest unfinished one); with the commit's resume
// record the next dispatcher delivers only what was unfinished.
func TestKill9WhileAnEndpointLagsRedeliversNoFinishedTask(t *testing.T) {
	const healthyN, perEndpoint, buffer = 20, 150, 300
	kc := testenv.Kafka(t)
	store := startStore(t, kc)
	recv := startReceiver(t)
	slow := recv.add(t, store, "slow", "", func(_ int, ctx *fasthttp.RequestCtx) {
		time.Sleep(20 * time.Millisecond)
		ctx.SetStatusCode(200)
	})
	var healthy []*endpoint.Entry
	for i := range healthyN {
		healthy = append(healthy, recv.add(t, store, fmt.Sprintf("h%02d", i), "", nil))
	}
	newProducer(t, kc).send(t, interleaved(perEndpoint, append([]*endpoint.Entry{slow}, healthy...))...)

	first := startChild(t, kc.TopicPrefix, buffer)
	eventually(t, 60*time.Second, func() error {
		for i := range healthyN {
			if n := len(recv.ledger(fmt.Sprintf("h%02d", i))); n < perEndpoint {
				return fmt.Errorf("h%02d: %d of %d", i, n, perEndpoint)
			}
		}
		return nil
	})
	time.Sleep(3 * testConfig(kc).CommitInterval) // the healthy endpoints' last tasks are committed
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.cmd.Wait() //nolint:errcheck
	before := len(recv.ledger("slow"))
	if before >= perEndpoint {
		t.Fatalf("the slow endpoint got all %d before the kill: the test needs it slower", perEndpoint)
	}

	startChild(t, kc.TopicPrefix, buffer)
	eventually(t, 60*time.Second, func() error {
		seen := map[int]bool{}
		for _, a := range recv.ledger("slow") {
			seen[a.seq] = true
		}
		if len(seen) < perEndpoint {
			return fmt.Errorf("slow endpoint: %d of %d distinct", len(seen), perEndpoint)
		}
		return nil
	})
	time.Sleep(time.Second) // would-be duplicates to the healthy endpoints arrive meanwhile
	dups := 0
	for i := range healthyN {
		dups += len(recv.ledger(fmt.Sprintf("h%02d", i))) - perEndpoint
	}
	t.Logf("killed with %d of %d slow deliveries made; %d duplicate deliveries to the healthy endpoints, %d to the slow one",
		before, perEndpoint, dups, len(recv.ledger("slow"))-perEndpoint)
	if dups != 0 {
		t.Errorf("%d finished tasks of the healthy endpoints delivered again after the kill", dups)
	}
}
