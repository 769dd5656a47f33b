package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
)

// seedExample is one curl example of the seed with its documented response.
type seedExample struct {
	curl     string
	response string
}

var fenceRE = regexp.MustCompile("(?s)```(\\w*)\n(.*?)```")

// seedExamples returns every curl example of testdata/webhooks-api.md (a
// copy of the seed) with the JSON response documented after it.
func seedExamples(t *testing.T) []seedExample {
	t.Helper()
	md, err := os.ReadFile("testdata/webhooks-api.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []seedExample
	blocks := fenceRE.FindAllStringSubmatch(string(md), -1)
	for i, b := range blocks {
		if b[1] != "bash" || !strings.Contains(b[2], "curl ") {
			continue
		}
		ex := seedExample{curl: b[2]}
		for _, next := range blocks[i+1:] {
			if next[1] == "json" {
				ex.response = next[2]
				break
			}
		}
		out = append(out, ex)
	}
	return out
}

// startAnalyticsConfig returns an analytics configuration for kc over a
// fresh ClickHouse database.
func startAnalyticsConfig(t *testing.T, kc *broker.Config) *analytics.Config {
	t.Helper()
	_, db := testenv.ClickHouse(t)
	return &analytics.Config{Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(), ClickHouseDatabase: db, OpsListen: "127.0.0.1:0",
		BatchInterval: 100 * time.Millisecond}
}

// startAnalytics runs the analytics component (attempts → ClickHouse) for
// kc and returns its configuration, for a gateway's History.
func startAnalytics(t *testing.T, kc *broker.Config) *analytics.Config {
	t.Helper()
	cfg := *startAnalyticsConfig(t, kc)
	a, err := analytics.New(cfg, slog.New(slog.DiscardHandler), ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Stop(ctx)
	})
	return &cfg
}

// TestSeedCurlExamples runs every curl example of the seed, as written,
// against a development-mode gateway (what `make run` starts): only the
// host is changed, YOUR_API_KEY is the printed development key and
// we_abc123xyz an endpoint of that account. Each answer has the documented
// shape: every documented field, with the documented JSON type (null where
// the OpenAPI document allows it: no delivery yet), and validates against
// schemas/openapi.json.
func TestSeedCurlExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required by this test")
	}
	kc := testenv.Kafka(t)
	an := startAnalytics(t, kc)
	g := startAPI(t, testConfig(kc, func(c *Config) { c.Dev, c.History = true, an }))
	key := g.DevKey()
	rc := newReceiver(t, 500) // so that ?status=failed lists the test delivery
	local := create(t, g, key, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, rc.url))["id"].(string)

	examples := seedExamples(t)
	if len(examples) != 7 {
		t.Fatalf("the seed has %d curl examples, this test knows 7", len(examples))
	}
	var created string
	for i, ex := range examples {
		cmd := strings.ReplaceAll(ex.curl, "https://api.zaits.net", "http://"+g.Addr())
		cmd = strings.ReplaceAll(cmd, "YOUR_API_KEY", key)
		target := created // update and delete act on the endpoint the create example made
		if strings.Contains(cmd, "/test") || strings.Contains(cmd, "/deliveries") {
			target = local // a receiver on this machine (test sends to it)
		}
		cmd = strings.ReplaceAll(cmd, "we_abc123xyz", target)
		var out []byte
		var err error
		attempt := func() error {
			out, err = exec.Command("bash", "-c", cmd).Output()
			if err != nil {
				return fmt.Errorf("%v", err)
			}
			// The delivery log is filled asynchronously: wait for the row.
			if strings.Contains(cmd, "/deliveries") && !strings.Contains(string(out), `"del_`) {
				return fmt.Errorf("no delivery yet: %s", out)
			}
			return nil
		}
		testenv.Eventually(t, 20*time.Second, attempt)
		var got, doc any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("example %d: %s\nanswer is not JSON: %s", i, cmd, out)
		}
		if err := json.Unmarshal([]byte(ex.response), &doc); err != nil {
			t.Fatalf("example %d: documented response: %v", i, err)
		}
		if err := sameShape("", doc, got); err != nil {
			t.Fatalf("example %d:\n%s\nanswer %s\ndiffers from the seed: %v", i, cmd, out, err)
		}
		method, path := curlRequest(t, cmd)
		if err := openAPISpec(t).validate(method, path, statusOf(got), "application/json", out); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(cmd, "-X POST") && strings.HasSuffix(path, "/endpoints") {
			created = got.(map[string]any)["data"].(map[string]any)["id"].(string)
		}
		t.Logf("example %d OK: %s %s", i, method, path)
	}
}

// statusOf infers the status class for validation: the examples all succeed.
func statusOf(v any) int {
	m, _ := v.(map[string]any)
	if m["success"] != true {
		return 400
	}
	if d, ok := m["data"].(map[string]any); ok {
		if _, ok := d["secret"]; ok {
			if _, ok := d["created_at"]; ok {
				return 201
			}
		}
	}
	return 200
}

var curlRE = regexp.MustCompile(`-X (\w+) "?http://[^/]+(/[^"\s]*)`)

func curlRequest(t *testing.T, cmd string) (method, path string) {
	m := curlRE.FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("cannot read method and path of %s", cmd)
	}
	return m[1], m[2]
}

// nullable are the fields whose documented example value may be null in
// an answer (no delivery yet / no response).
var nullable = map[string]bool{"last_delivery": true, "success_rate": true, "response_status": true, "error_message": true}

// sameShape reports where got lacks a documented field or has another type.
func sameShape(path string, doc, got any) error {
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", path, got)
		}
		for k, dv := range d {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if gv == nil && nullable[k] {
				continue
			}
			if err := sameShape(path+"."+k, dv, gv); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", path, got)
		}
		if len(d) > 0 && len(g) == 0 {
			return fmt.Errorf("%s: empty, the seed shows items", path)
		}
		for i := range g {
			if err := sameShape(fmt.Sprintf("%s[%d]", path, i), d[0], g[i]); err != nil {
				return err
			}
		}
	default:
		if fmt.Sprintf("%T", doc) != fmt.Sprintf("%T", got) {
			return fmt.Errorf("%s: want %T like %v, got %T %v", path, doc, doc, got, got)
		}
	}
	return nil
}
