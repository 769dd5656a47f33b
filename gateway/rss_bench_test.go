package gateway_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/system"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
)

// rssMB is the resident memory of process pid in MB (VmRSS).
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1000
		}
	}
	return 0
}

var uploadChunk = make([]byte, 64<<10) // shared, read-only: clients hold no body of their own

// upload posts size bytes to /v1/events/batch without a key and returns
// the status of the answer: the body is written while the answer is read.
func upload(addr string, size int) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintf(c, "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
	go func() {
		for left := size; left > 0; {
			n, err := c.Write(uploadChunk[:min(left, len(uploadChunk))])
			if err != nil {
				return
			}
			left -= n
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkUnauthenticatedUploadsRSS starts `zaits all` (the binary of
// ZAITS_BENCH_BINARY, else this tree built into a temporary directory;
// extra flags in ZAITS_BENCH_FLAGS) on the real Kafka and ClickHouse; 200 concurrent clients each upload 8 MB
// (8,000,000 bytes, under the old 8 MiB server limit) to POST
// /v1/events/batch without a key, twice, while the process's resident
// memory is sampled every 20 ms. Reported: rss-base-MB (before the
// uploads), rss-peak-MB, rss-growth-MB (peak - base), the uploads answered
// 401, or 429 (over the failed-authentication limit: run with
// ZAITS_BENCH_FLAGS=-gateway.auth-failure-rate=0 for 401s only), those
// that got no answer, and uploads/s. Run with -benchtime=1x.
func BenchmarkUnauthenticatedUploadsRSS(b *testing.B) {
	bin := os.Getenv("ZAITS_BENCH_BINARY")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "zaits")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/zaits/webhooks/cmd/zaits").CombinedOutput(); err != nil {
			b.Fatalf("build zaits: %v\n%s", err, out)
		}
	}
	kc := &broker.Config{}
	kc.RegisterFlags(flag.NewFlagSet("k", flag.ContinueOnError))
	kc.Brokers = testenv.KafkaAddr()
	for name := range kc.Partitions {
		kc.Partitions[name] = min(kc.Partitions[name], 2)
	}
	s, err := system.Start(context.Background(), system.Config{Binary: bin, Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(),
		Flags: strings.Fields(os.Getenv("ZAITS_BENCH_FLAGS"))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop(context.Background())
	addr := strings.TrimPrefix(s.GatewayURL, "http://")
	const clients, rounds, size = 200, 2, 8_000_000
	time.Sleep(2 * time.Second) // let start-up settle
	base := rssMB(s.Pid())
	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r := int64(rssMB(s.Pid()) * 1000); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	var answered401, answered429, failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range rounds {
					status, err := upload(addr, size)
					switch {
					case err != nil:
						failed.Add(1)
					case status == 401:
						answered401.Add(1)
					case status == 429: // over -gateway.auth-failure-rate (or -gateway.max-conns-per-ip)
						answered429.Add(1)
					default:
						b.Errorf("upload answered %d", status)
					}
				}
			})
		}
		wg.Wait()
	}
	el := time.Since(start)
	b.StopTimer()
	close(stop)
	sampler.Wait()
	p := float64(peak.Load()) / 1000
	b.ReportMetric(base, "rss-base-MB")
	b.ReportMetric(p, "rss-peak-MB")
	b.ReportMetric(p-base, "rss-growth-MB")
	b.ReportMetric(float64(answered401.Load()), "answered-401")
	b.ReportMetric(float64(answered429.Load()), "answered-429")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(float64(b.N*clients*rounds)/el.Seconds(), "uploads/s")
}
