package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// TestSlowAndHangingEndpointsDoNotHoldBackTheirPartition puts healthy, slow
// and hanging endpoints on one deliveries partition and gives the slow and
// hanging ones far more tasks than the partition's read-ahead bound: the
// healthy endpoints' deliveries must keep arriving promptly, the slow
// endpoint must still get every task once and in order, and the tasks held
// in memory must stay within the bound.
func TestSlowAndHangingEndpointsDoNotHoldBackTheirPartition(t *testing.T) {
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 1 })
	store := startStore(t, kc)
	recv := startReceiver(t)
	release := make(chan struct{})
	defer close(release)
	var healthy []*endpoint.Entry
	for i := range 5 {
		healthy = append(healthy, recv.add(t, store, fmt.Sprintf("ok%d", i), "", nil))
	}
	slow := recv.add(t, store, "slow", "", func(_ int, ctx *fasthttp.RequestCtx) {
		time.Sleep(40 * time.Millisecond) // the endpoint's own response time
		ctx.SetStatusCode(200)
	})
	hang := recv.add(t, store, "hang", "", func(_ int, ctx *fasthttp.RequestCtx) {
		select { // never answers within the delivery timeout
		case <-release:
		case <-time.After(3 * time.Second):
		}
	})
	cfg := testConfig(kc)
	cfg.Delivery.Timeout = time.Second
	cfg.PartitionBuffer = 100
	cfg.LaneBuffer = 20
	reg := prometheus.NewRegistry()
	startDispatcherWith(t, cfg, reg)
	p := newProducer(t, kc)

	// Warm up: the group joined and a connection open to the receiver.
	warmUp(t, p, recv, healthy)

	// 20 rounds, 50 ms apart: one task per healthy endpoint, 10 for the
	// slow one (400 ms of its time) and 5 for the hanging one (5 s of
	// timeouts). After 4 rounds the slow and hanging endpoints alone hold
	// more tasks than PartitionBuffer.
	const rounds, slowPer, hangPer = 20, 10, 5
	for round := range rounds {
		var ts []schemas.Task
		for k := range slowPer {
			ts = append(ts, task(slow, round*slowPer+k))
		}
		for k := range hangPer {
			ts = append(ts, task(hang, round*hangPer+k))
		}
		for _, e := range healthy {
			ts = append(ts, task(e, round))
		}
		p.send(t, ts...)
		time.Sleep(50 * time.Millisecond) // pacing the load, not waiting for a result
	}
	maxBuffered := 0.0
	eventually(t, 15*time.Second, func() error {
		maxBuffered = max(maxBuffered, metricValue(t, reg, "zaits_dispatcher_buffered_tasks", nil))
		for i := range healthy {
			if n := len(recv.ledger(fmt.Sprintf("ok%d", i))); n < rounds+1 {
				return fmt.Errorf("healthy endpoint ok%d: %d of %d deliveries (hanging endpoint called %d times)", i, n, rounds+1, len(recv.ledger("hang")))
			}
		}
		return nil
	})
	var worst time.Duration
	for i := range healthy {
		for _, a := range recv.ledger(fmt.Sprintf("ok%d", i)) {
			if a.seq != warmupSeq {
				worst = max(worst, a.at.Sub(a.acceptedAt))
			}
		}
	}
	t.Logf("slowest healthy delivery %s after acceptance; slow endpoint %d of %d delivered, hanging endpoint called %d times",
		worst, len(recv.ledger("slow")), rounds*slowPer, len(recv.ledger("hang")))
	// The hanging endpoint needs 100 s for its 100 first attempts and the
	// slow one about 8 s: a healthy delivery waiting for either is late by seconds.
	if worst > 3*time.Second {
		t.Errorf("a healthy delivery took %s: held back by the slow or hanging endpoint", worst)
	}

	// The slow endpoint got every task, in order, once (tasks beyond its
	// in-memory share were read again from Kafka).
	eventually(t, 30*time.Second, func() error {
		maxBuffered = max(maxBuffered, metricValue(t, reg, "zaits_dispatcher_buffered_tasks", nil))
		if n := len(recv.ledger("slow")); n < rounds*slowPer {
			return fmt.Errorf("slow endpoint: %d of %d", n, rounds*slowPer)
		}
		return nil
	})
	for i, a := range recv.ledger("slow") {
		if a.seq != i {
			t.Fatalf("slow endpoint: arrival %d is seq %d, want %d (order broken, a task lost or delivered twice)", i, a.seq, i)
		}
	}
	// The gauge covers the delay topics' partitions too, where the hanging
	// endpoint's retries wait.
	if bound := cfg.PartitionBuffer + rounds*hangPer; maxBuffered > float64(bound) {
		t.Errorf("%v tasks buffered, want at most %d", maxBuffered, bound)
	}
}

// TestSkippedTasksSurviveAStop stops a dispatcher while a slow endpoint's
// later tasks are skipped (left in Kafka for its lane to read again): the
// dispatcher that takes the partition over must deliver every one of them,
// in order, and — reading the commit's resume record — none of the other
// endpoints' tasks again, although the committed offset is the slow
// endpoint's oldest unfinished task (before the record: 339 duplicates).
func TestSkippedTasksSurviveAStop(t *testing.T) {
	kc, recv, slow, healthy := slowAndThreeHealthy(t, 30*time.Millisecond)
	cfg := testConfig(kc)
	cfg.PartitionBuffer, cfg.LaneBuffer = 80, 10
	reg := prometheus.NewRegistry()
	a := startDispatcherWith(t, cfg, reg)
	const n = 150
	newProducer(t, kc).send(t, interleaved(n, append([]*endpoint.Entry{slow}, healthy...))...)
	eventually(t, 30*time.Second, func() error {
		if got := len(recv.ledger("slow")); got < 30 {
			return fmt.Errorf("slow endpoint: %d delivered", got)
		}
		if metricValue(t, reg, "zaits_dispatcher_lane_refills_total", nil) == 0 {
			return errors.New("no lane has read skipped tasks again yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stoppedAt := len(recv.ledger("slow"))
	if stoppedAt >= n {
		t.Fatalf("the slow endpoint got all %d tasks before the stop: nothing was left skipped", n)
	}
	startDispatcher(t, cfg)
	eventually(t, 30*time.Second, func() error {
		if got := len(recv.ledger("slow")); got < n {
			return fmt.Errorf("slow endpoint: %d of %d", got, n)
		}
		for i := range healthy {
			seen := map[int]bool{}
			for _, a := range recv.ledger(fmt.Sprintf("ok%d", i)) {
				seen[a.seq] = true
			}
			if len(seen) < n {
				return fmt.Errorf("ok%d: %d of %d distinct tasks", i, len(seen), n)
			}
		}
		return nil
	})
	for i, a := range recv.ledger("slow") {
		if a.seq != i {
			t.Fatalf("slow endpoint: arrival %d is seq %d (order broken, a task lost or delivered twice)", i, a.seq)
		}
	}
	dups := 0
	for i := range healthy {
		dups += len(recv.ledger(fmt.Sprintf("ok%d", i))) - n
	}
	t.Logf("stopped after %d of %d slow deliveries; %d duplicate deliveries to the healthy endpoints", stoppedAt, n, dups)
	if dups != 0 || len(recv.ledger("slow")) != n {
		t.Errorf("after a graceful stop: %d duplicates to the healthy endpoints, %d deliveries of %d to the slow one; want none again", dups, len(recv.ledger("slow")), n)
	}
}

// TestLaneReadsOnWithOneReader: a lane that stays behind reads its skipped
// tasks again chunk after chunk (Config.LaneBuffer at a time) with one
// reader kept open between chunks. Before, every chunk opened a reader
// (two connections and a metadata request, and a discarded prefetch of up
// to 1 MiB): under load, bench e2e with a lane buffer of 100 re-read 11
// messages per attempt.
func TestLaneReadsOnWithOneReader(t *testing.T) {
	kc, recv, slow, healthy := slowAndThreeHealthy(t, 2*time.Millisecond)
	cfg := testConfig(kc)
	cfg.PartitionBuffer, cfg.LaneBuffer = 40, 5
	reg := prometheus.NewRegistry()
	startDispatcherWith(t, cfg, reg)
	const n = 200
	newProducer(t, kc).send(t, interleaved(n, append([]*endpoint.Entry{slow}, healthy...))...)
	eventually(t, 60*time.Second, func() error {
		for _, name := range []string{"slow", "ok0", "ok1", "ok2"} {
			if got := len(recv.ledger(name)); got < n {
				return fmt.Errorf("%s: %d of %d", name, got, n)
			}
		}
		return nil
	})
	for _, name := range []string{"slow", "ok0", "ok1", "ok2"} {
		for i, a := range recv.ledger(name) {
			if a.seq != i {
				t.Fatalf("%s: arrival %d is seq %d (order broken, a task lost or delivered twice)", name, i, a.seq)
			}
		}
	}
	readers := metricValue(t, reg, "zaits_dispatcher_lane_refills_total", nil)
	reread := metricValue(t, reg, "zaits_dispatcher_lane_refill_messages_total", nil)
	t.Logf("%v refill readers, %v messages read again, for %d tasks in chunks of %d", readers, reread, 4*n, cfg.LaneBuffer)
	if reread == 0 {
		t.Fatal("no task was read again: the lane never fell behind, the test proves nothing")
	}
	if readers > 10 {
		t.Errorf("%v readers opened for about %d chunks: a reader per chunk", readers, n/cfg.LaneBuffer)
	}
}

// slowAndThreeHealthy sets up a one-partition cluster with a receiver
// whose endpoint "slow" answers after delay and "ok0".."ok2" at once.
func slowAndThreeHealthy(t *testing.T, delay time.Duration) (*broker.Config, *receiver, *endpoint.Entry, []*endpoint.Entry) {
	t.Helper()
	kc := testenv.Kafka(t, func(c *broker.Config) { c.Partitions[schemas.TopicDeliveries] = 1 })
	store := startStore(t, kc)
	recv := startReceiver(t)
	slow := recv.add(t, store, "slow", "", func(_ int, ctx *fasthttp.RequestCtx) {
		time.Sleep(delay)
		ctx.SetStatusCode(200)
	})
	var healthy []*endpoint.Entry
	for i := range 3 {
		healthy = append(healthy, recv.add(t, store, fmt.Sprintf("ok%d", i), "", nil))
	}
	return kc, recv, slow, healthy
}
