package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	s := New("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	var kafkaErr error
	s.AddCheck("kafka", func(context.Context) error { return kafkaErr })
	s.AddCheck("clickhouse", func(context.Context) error { return nil })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	f := func(path string, wantStatus int, check func(body string) error) {
		t.Helper()
		code, body := get(path)
		if code != wantStatus {
			t.Fatalf("GET %s = %d %s, want %d", path, code, body, wantStatus)
		}
		if err := check(body); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	f("/healthz", 200, func(string) error { return nil })
	f("/readyz", 200, func(string) error { return nil })
	f("/metrics", 200, func(b string) error {
		if !strings.Contains(b, "zaits_test_total 1") || !strings.Contains(b, "go_goroutines") {
			return errors.New("metrics missing")
		}
		return nil
	})
	kafkaErr = errors.New("dial tcp 127.0.0.1:9092: connection refused")
	f("/readyz", 503, func(b string) error {
		var v struct {
			Failing map[string]string `json:"failing"`
		}
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			return err
		}
		if v.Failing["kafka"] != kafkaErr.Error() || len(v.Failing) != 1 {
			return errors.New("reason missing")
		}
		return nil
	})
}

// /debug/pprof/cmdline shows the command line with every flag value
// redacted: no secret given as a flag reaches the debug output.
func TestCmdlineRedactsFlagValues(t *testing.T) {
	got := RedactArgs([]string{"zaits", "all", "-dev", "-endpoints.encryption-key=S3CRET", "-clickhouse.password", "PW", "--log.level=debug", "x"})
	want := []string{"zaits", "all", "-dev", "-endpoints.encryption-key=[redacted]", "-clickhouse.password", "[redacted]", "--log.level=[redacted]", "[redacted]"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%q, want %q", got, want)
	}
	s := New("127.0.0.1:0", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	saved := os.Args
	os.Args = []string{"zaits", "gateway", "-endpoints.encryption-key=S3CRET"}
	defer func() { os.Args = saved }()
	resp, err := http.Get("http://" + s.Addr() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "S3CRET") || !strings.Contains(string(b), "-endpoints.encryption-key=[redacted]") {
		t.Fatalf("cmdline: %q", b)
	}
}
