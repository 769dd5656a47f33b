package flagenv

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParsePrecedence(t *testing.T) {
	f := func(args []string, env map[string]string, wantAddr string, wantWait time.Duration) {
		t.Helper()
		for _, k := range []string{"ZT_KAFKA_BROKERS", "ZT_SHUTDOWN_TIMEOUT"} {
			t.Setenv(k, "") // restored when the test ends
			os.Unsetenv(k)
		}
		for k, v := range env {
			t.Setenv(k, v)
		}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		addr := fs.String("kafka.brokers", "default:1", "")
		wait := fs.Duration("shutdown-timeout", time.Second, "")
		if err := Parse(fs, "ZT", args); err != nil {
			t.Fatalf("Parse(%v): %v", args, err)
		}
		if *addr != wantAddr || *wait != wantWait {
			t.Fatalf("Parse(%v, %v) = %q, %v; want %q, %v", args, env, *addr, *wait, wantAddr, wantWait)
		}
	}
	f(nil, nil, "default:1", time.Second)
	f(nil, map[string]string{"ZT_KAFKA_BROKERS": "env:2"}, "env:2", time.Second)
	f([]string{"-kafka.brokers=flag:3"}, map[string]string{"ZT_KAFKA_BROKERS": "env:2"}, "flag:3", time.Second)
	f(nil, map[string]string{"ZT_SHUTDOWN_TIMEOUT": "3s"}, "default:1", 3*time.Second)
}

func TestParseBadEnv(t *testing.T) {
	t.Setenv("ZT_SHUTDOWN_TIMEOUT", "soon")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("shutdown-timeout", time.Second, "")
	err := Parse(fs, "ZT", nil)
	if err == nil || !strings.Contains(err.Error(), "ZT_SHUTDOWN_TIMEOUT") {
		t.Fatalf("want an error naming the variable, got %v", err)
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var s Secret
	fs.Var(&s, "encryption-key", "")
	fs.String("listen", ":1", "")
	if err := fs.Parse([]string{"-encryption-key=hunter2"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", LogValue(fs))
	out := buf.String()
	if strings.Contains(out, "hunter2") || !strings.Contains(out, `"encryption-key":"[redacted]"`) || !strings.Contains(out, `"listen":":1"`) {
		t.Fatalf("bad log line: %s", out)
	}
}
