package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
)

// TestAllFollowsKafkaAndStopsOnSignal runs `zaits all` in-process against a
// private Kafka: every /readyz answers 200, turns 503 naming kafka within 5 s
// of the broker stopping, returns to 200 when it is back (same process), and
// SIGINT stops everything within the shutdown bound.
func TestAllFollowsKafkaAndStopsOnSignal(t *testing.T) {
	k := testenv.StartKafka(t)
	_, db := testenv.ClickHouse(t)
	ops := []string{
		fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	args := []string{
		"-dev", "-log.level=warn",
		"-kafka.brokers=" + k.Addr, "-kafka.topic-prefix=serve-" + broker.RandomSuffix(6),
		"-clickhouse.addr=" + testenv.ClickHouseAddr(), "-clickhouse.database=" + db,
		fmt.Sprintf("-gateway.listen=127.0.0.1:%d", testenv.FreePort(t)),
		"-gateway.ops-listen=" + ops[0], "-dispatcher.ops-listen=" + ops[1], "-analytics.ops-listen=" + ops[2], "-router.ops-listen=" + ops[3],
		"-shutdown-timeout=8s",
	}
	done := make(chan int, 1)
	go func() { done <- serve("all", args) }()

	readyz := func(addr string) (int, string) {
		c := http.Client{Timeout: 4 * time.Second}
		resp, err := c.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	allAnswer := func(want int, wantBody string) func() error {
		return func() error {
			select {
			case code := <-done:
				t.Fatalf("serve returned %d early", code)
			default:
			}
			for _, a := range ops {
				if code, body := readyz(a); code != want || !strings.Contains(body, wantBody) {
					return fmt.Errorf("%s/readyz = %d %s, want %d with %q", a, code, body, want, wantBody)
				}
			}
			return nil
		}
	}
	began := time.Now()
	testenv.Eventually(t, 60*time.Second, allAnswer(200, "ready"))
	t.Logf("all ready %s after start", time.Since(began).Round(time.Millisecond))

	k.Stop()
	stopped := time.Now()
	testenv.Eventually(t, 5*time.Second, allAnswer(503, `"kafka"`))
	t.Logf("readyz 503 %s after Kafka stopped", time.Since(stopped).Round(time.Millisecond))

	k.Start()
	restarted := time.Now()
	testenv.Eventually(t, 30*time.Second, allAnswer(200, "ready"))
	t.Logf("all ready again %s after Kafka answered", time.Since(restarted).Round(time.Millisecond))

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d after SIGINT", code)
		}
		t.Logf("stopped %s after SIGINT", time.Since(signalled).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10 s of SIGINT")
	}
}

func TestCheckConfig(t *testing.T) {
	f := func(args []string, want int) {
		t.Helper()
		if got := serve("gateway", append([]string{"-check-config", "-log.level=error"}, args...)); got != want {
			t.Fatalf("serve(gateway, %v) = %d, want %d", args, got, want)
		}
	}
	f([]string{"-dev"}, 0)
	f(nil, 2) // no encryption key outside development mode
	f([]string{"-dev", "-kafka.partitions.events=0"}, 2)
	f([]string{"-dev", "-gateway.listen=nonsense"}, 2)
	f([]string{"-dev", "-log.format=xml"}, 2)
	f([]string{"-endpoints.encryption-key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, 0)
}
