package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/gateway/router"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
)

// envRouterChild makes the test binary a router child: "<topic prefix> <database>".
const envRouterChild = "ZAITS_TEST_ROUTER_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(envRouterChild); v != "" {
		os.Exit(runRouterChild(v))
	}
	os.Exit(m.Run())
}

// runRouterChild runs a router until SIGTERM (or SIGKILL, which is the point).
func runRouterChild(v string) int {
	prefix, db, _ := strings.Cut(v, " ")
	kc := testenv.KafkaFor(prefix)
	an := &analytics.Config{Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(), ClickHouseDatabase: db}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := router.New(routerConfig(kc, an), log, ops.NewRegistry())
	if err != nil {
		log.Error("child", "err", err)
		return 1
	}
	return testenv.ServeUntilSIGTERM(r, log)
}

// A kill -9 of the router running a replay: another router takes the
// account's partition over and resumes the job where it last recorded its
// progress; every event arrives, in event order at its first arrival, and
// only what was sent after the last record arrives twice (same delivery id).
func TestAJobSurvivesAKill9OfItsRouter(t *testing.T) {
	s := startSystem(t, withoutRouter)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envRouterChild+"="+s.kc.TopicPrefix+" "+s.db)
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if child.ProcessState == nil {
			child.Process.Kill() //nolint:errcheck
			child.Wait()         //nolint:errcheck
		}
		if t.Failed() {
			t.Logf("router child output:\n%s", out.String())
		}
	})

	const n, rate = 3000, 300
	start := time.Now().UTC().Truncate(time.Second)
	events := s.publish("document.completed", 0, n, "")
	// Routed live before the endpoint exists: only the replay delivers them.
	s.waitRouted()
	id, _ := s.endpoint("/backfill", "document.completed")
	r := call(t, s.g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/replay", fmt.Sprintf(`{"since": %q, "rate": %d}`, start.Format(time.RFC3339), rate))
	want(t, r, 202, "")
	jid := r.data()["id"].(string)
	var sentAtKill float64
	testenv.Eventually(t, 60*time.Second, func() error {
		j := call(t, s.g, keyA, "GET", "/v1/webhooks/endpoints/"+id+"/jobs/"+jid, "").data()
		sentAtKill = j["counts"].(map[string]any)["sent"].(float64)
		if sentAtKill < 600 {
			return fmt.Errorf("job %s, %v sent", j["status"], sentAtKill)
		}
		return nil
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait() //nolint:errcheck
	killed := time.Now()
	arrivedAtKill := len(s.recv.at("/backfill"))

	// Another router: once the dead one's session expired, it owns the
	// partition and resumes the job.
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt := s.startRouter(log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Stop(context.Background()) }) //nolint:errcheck
	j := s.job(id, jid, 90*time.Second)
	if j["status"] != "completed" || j["counts"].(map[string]any)["sent"].(float64) < n {
		t.Fatalf("job after the kill: %v", j)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		seen := map[string]bool{}
		for _, a := range s.recv.at("/backfill") {
			seen[a.event] = true
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d events arrived", len(seen), n)
		}
		return nil
	})
	got := s.recv.at("/backfill")
	first := map[string]bool{}
	next, dups := 0, 0
	for _, a := range got {
		if first[a.event] {
			dups++
			continue
		}
		first[a.event] = true
		if a.event != events[next] {
			t.Fatalf("first arrival %d is %s, want %s (event order)", next, a.event, events[next])
		}
		next++
	}
	t.Logf("killed after %v sent (%d arrived); completed %s later; %d arrivals for %d events: %d sent again after the kill",
		sentAtKill, arrivedAtKill, time.Since(killed).Round(time.Second), len(got), n, dups)
	// At most what the dead router sent after its last record: a second of
	// tasks at the job's rate, and one batch being written.
	if dups > rate+200 {
		t.Fatalf("%d duplicates, want at most %d (one checkpoint interval at %d/s plus a batch)", dups, rate+200, rate)
	}
}
