package system_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/system"
	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// The started system takes events with the minted service token and
// management requests with the minted API key, and Stop removes its topics.
func TestStartServesAndStopCleansUp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "zaits")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/zaits/webhooks/cmd/zaits").CombinedOutput(); err != nil {
		t.Fatalf("build zaits: %v\n%s", err, out)
	}
	kc := &broker.Config{}
	kc.RegisterFlags(flag.NewFlagSet("k", flag.ContinueOnError))
	kc.Brokers = testenv.KafkaAddr()
	for name := range kc.Partitions {
		kc.Partitions[name] = min(kc.Partitions[name], 2)
	}
	ctx := context.Background()
	s, err := system.Start(ctx, system.Config{Binary: bin, Kafka: kc, ClickHouseAddr: testenv.ClickHouseAddr(), Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop(context.Background())
		}
	})
	f := func(method, path, token, body string, want int) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI(s.GatewayURL + path)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if resp.StatusCode() != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode(), resp.Body(), want)
		}
	}
	f("POST", "/v1/events", s.ServiceToken, `{"type":"document.signed","account_id":"acct_bench","data":{"seq":0}}`, 202)
	f("POST", "/v1/events", "zst_wrong", `{"type":"document.signed","account_id":"acct_bench","data":{"seq":0}}`, 401)
	f("GET", "/v1/webhooks/endpoints", s.APIKey, "", 200)

	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stopped = true
	if err := s.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	md, err := kc.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{schemas.Topic(s.TopicPrefix, schemas.TopicEvents)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if tp.Error == nil && strings.HasPrefix(tp.Name, s.TopicPrefix) {
			t.Errorf("topic %s still exists after Stop", tp.Name)
		}
	}
}
