package receiver_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/receiver"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// Known-answer vectors computed outside Go (openssl), so a bug shared by the
// signing and the verifying side cannot hide.
func TestSignatureVectors(t *testing.T) {
	if got, want := receiver.SeedSignature("whsec_1234567890abcdef", []byte(`{"id":"evt_1"}`)),
		"sha256=38578ac0d34a59a1b9654123add7f79dc2b0e807b9ef73f7ff42f0777a0b441e"; got != want {
		t.Errorf("seed signature = %s, want %s", got, want)
	}
	// The Standard Webhooks specification's example.
	key := receiver.StandardKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if got, want := receiver.StandardSignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)),
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("standard signature = %s, want %s", got, want)
	}
	if got := string(receiver.StandardKey("whsec_not base64!")); got != "whsec_not base64!" {
		t.Errorf("a secret that does not decode must be used raw, got key %q", got)
	}
}

const secret = "whsec_c2VjcmV0LWZvci10aGUtYmVuY2gtcmVjZWl2ZXI="

// send is one delivery a test makes.
type send struct {
	seq    int64
	event  string // event id; default evt_<seq>
	secret string // default the endpoint's secret
	// tamper changes the request after signing.
	tamper func(*fasthttp.Request)
}

// counts are the Report fields a case checks.
type counts struct {
	Delivered, SignatureFailures, Malformed, OrderViolations, Duplicates, Losses, Unexpected, FailedAnswers int64
}

func TestReceiverReportsEveryFault(t *testing.T) {
	r := receiver.New(receiver.Config{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	client := &fasthttp.Client{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}

	do := func(t *testing.T, name string, s send) int {
		t.Helper()
		if s.event == "" {
			s.event = "evt_" + strconv.FormatInt(s.seq, 10)
		}
		if s.secret == "" {
			s.secret = secret
		}
		body := fmt.Appendf(nil, `{"id":%q,"type":"document.signed","created":1700000000,"data":{"seq":%d,"document_id":"doc_1"}}`, s.event, s.seq)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(r.URL(name))
		req.SetBody(body)
		receiver.Sign(&req.Header, s.secret, schemas.DeliveryID(s.event, "we_"+name), "document.signed", time.Now().Unix(), body)
		if s.tamper != nil {
			s.tamper(req)
		}
		if err := client.Do(req, resp); err != nil {
			t.Fatalf("send seq %d: %v", s.seq, err)
		}
		return resp.StatusCode()
	}

	n := 0
	f := func(desc string, expect []int64, sends []send, want counts) {
		t.Helper()
		t.Run(desc, func(t *testing.T) {
			n++
			name := "ep" + strconv.Itoa(n)
			r.Register(receiver.Endpoint{Name: name, ID: "we_" + name, Secrets: []string{"whsec_old-secret", secret}})
			for _, seq := range expect {
				if err := r.Expect(name, seq, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range sends {
				do(t, name, s)
			}
			er := r.Report().Endpoints[name]
			got := counts{er.Delivered, er.SignatureFailures, er.Malformed, er.OrderViolations, er.Duplicates, er.Losses, er.Unexpected, er.FailedAnswers}
			if got != want {
				t.Errorf("report = %+v, want %+v", got, want)
			}
			if er.Latency.TotalCount() != er.Expected-er.Losses {
				t.Errorf("latency samples = %d, want one per arrived expected event (%d)", er.Latency.TotalCount(), er.Expected-er.Losses)
			}
		})
	}
	seqs := func(ss ...int64) []send {
		out := make([]send, len(ss))
		for i, s := range ss {
			out[i] = send{seq: s}
		}
		return out
	}

	f("clean run", []int64{0, 1, 2, 3}, seqs(0, 1, 2, 3), counts{Delivered: 4})
	f("wrong seed signature", []int64{0}, []send{{seq: 0, secret: "whsec_wrong"}}, counts{SignatureFailures: 1, Losses: 1})
	f("wrong standard webhooks signature", []int64{0}, []send{{seq: 0, tamper: func(q *fasthttp.Request) {
		q.Header.Set(receiver.HeaderWebhookSigns, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	}}}, counts{SignatureFailures: 1, Losses: 1})
	f("standard webhooks headers missing", nil, []send{{seq: 0, tamper: func(q *fasthttp.Request) {
		q.Header.Del(receiver.HeaderWebhookSigns)
		q.Header.Del(receiver.HeaderWebhookID)
		q.Header.Del(receiver.HeaderWebhookTime)
	}}}, counts{SignatureFailures: 1})
	f("stale timestamp", nil, []send{{seq: 0, tamper: func(q *fasthttp.Request) {
		// Re-sign correctly with a timestamp an hour old: only its age is wrong.
		id, ts := "del_x", time.Now().Add(-time.Hour).Unix()
		q.Header.Set(receiver.HeaderWebhookID, id)
		q.Header.Set(receiver.HeaderWebhookTime, strconv.FormatInt(ts, 10))
		q.Header.Set(receiver.HeaderWebhookSigns, receiver.StandardSignature(receiver.StandardKey(secret), id, ts, q.Body()))
	}}}, counts{SignatureFailures: 1})
	f("body changed after signing", nil, []send{{seq: 0, tamper: func(q *fasthttp.Request) {
		q.SetBody(append(q.Body(), ' '))
	}}}, counts{SignatureFailures: 1})
	f("old secret during rotation", []int64{0}, []send{{seq: 0, secret: "whsec_old-secret"}}, counts{Delivered: 1})
	f("missing delivery", []int64{0, 1, 2, 3}, seqs(0, 1, 3), counts{Delivered: 3, Losses: 1})
	f("swapped order", []int64{0, 1, 2}, seqs(0, 2, 1), counts{Delivered: 3, OrderViolations: 1})
	f("duplicate", []int64{0, 1}, seqs(0, 1, 1), counts{Delivered: 2, Duplicates: 1})
	f("delivery id of another event", nil, []send{{seq: 0, tamper: func(q *fasthttp.Request) {
		// Correctly signed, but X-Zaits-Delivery is not DeliveryID(body id, endpoint id).
		q.Header.Set(receiver.HeaderDelivery, schemas.DeliveryID("evt_other", "we_x"))
	}}}, counts{Malformed: 1})
	f("unexpected event", []int64{0}, seqs(0, 1), counts{Delivered: 2, Unexpected: 1})

	t.Run("expected without latency", func(t *testing.T) {
		r.Register(receiver.Endpoint{Name: "unmeasured", ID: "we_unmeasured", Secrets: []string{secret}})
		for seq := range int64(3) {
			if err := r.Expect("unmeasured", seq, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seqs(0, 1) {
			do(t, "unmeasured", s)
		}
		er := r.Report().Endpoints["unmeasured"]
		if er.Expected != 3 || er.Losses != 1 || er.Latency.TotalCount() != 0 {
			t.Errorf("expected %d, losses %d, latency samples %d: want 3, 1 and none (warm-up events are checked, not timed)", er.Expected, er.Losses, er.Latency.TotalCount())
		}
	})
}

func TestReceiverBehaviours(t *testing.T) {
	r := receiver.New(receiver.Config{HangLimit: 200 * time.Millisecond})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	r.Register(receiver.Endpoint{Name: "a", Secrets: []string{secret}})
	client := &fasthttp.Client{ReadTimeout: 5 * time.Second}
	post := func(seq int64) (int, time.Duration) {
		body := fmt.Appendf(nil, `{"id":"evt_%d","type":"face.verified","created":1,"data":{"seq":%d}}`, seq, seq)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(r.URL("a"))
		req.SetBody(body)
		receiver.Sign(&req.Header, secret, schemas.DeliveryID(fmt.Sprintf("evt_%d", seq), "a"), "face.verified", time.Now().Unix(), body)
		start := time.Now()
		if err := client.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), time.Since(start)
	}
	if err := r.SetBehaviour("a", receiver.Behaviour{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(0); code != 500 {
		t.Errorf("failing endpoint answered %d, want 500", code)
	}
	if err := r.SetBehaviour("a", receiver.Behaviour{Hang: true}); err != nil {
		t.Fatal(err)
	}
	if code, took := post(0); code != fasthttp.StatusGatewayTimeout || took < 200*time.Millisecond {
		t.Errorf("hanging endpoint answered %d after %s, want 504 after the 200ms hang limit", code, took)
	}
	if err := r.SetBehaviour("a", receiver.Behaviour{}); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(0); code != 200 {
		t.Errorf("recovered endpoint answered %d, want 200", code)
	}
	er := r.Report().Endpoints["a"]
	if er.Attempts != 3 || er.FailedAnswers != 2 || er.Delivered != 1 || er.Duplicates != 0 {
		t.Errorf("report %+v: want 3 attempts, 2 failed answers, 1 delivered, no duplicate (a retry after a failure is not a duplicate)", er)
	}

	// Hold: the request stays open until the behaviour changes, then is
	// answered as the new one says, and counts as delivered.
	if err := r.SetBehaviour("a", receiver.Behaviour{Hold: true}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		took time.Duration
	}
	held := make(chan answer, 1)
	go func() { code, took := post(1); held <- answer{code, took} }()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := r.Report().Endpoints["a"].Attempts; n != 4 {
			return fmt.Errorf("%d attempts, want the held one too", n)
		}
		return nil
	})
	select {
	case a := <-held:
		t.Fatalf("a held request was answered %d before the behaviour changed", a.code)
	case <-time.After(300 * time.Millisecond): // longer than the hang limit: Hold is not Hang
	}
	if err := r.SetBehaviour("a", receiver.Behaviour{}); err != nil {
		t.Fatal(err)
	}
	if a := <-held; a.code != 200 || a.took < 300*time.Millisecond {
		t.Errorf("released request answered %d after %s, want 200 after the hold", a.code, a.took)
	}
	if er := r.Report().Endpoints["a"]; er.Delivered != 2 || er.FailedAnswers != 2 {
		t.Errorf("after the hold: %+v, want 2 delivered, still 2 failed answers", er)
	}
	if err := r.SetBehaviour("nope", receiver.Behaviour{}); err == nil {
		t.Error("SetBehaviour of an unregistered endpoint must fail")
	}
}

func TestReceiverRefusesNonLoopback(t *testing.T) {
	r := receiver.New(receiver.Config{Listen: "0.0.0.0:0"})
	if err := r.Start(); err == nil {
		_ = r.Close(context.Background())
		t.Fatal("listening on 0.0.0.0 must be refused")
	}
}

// BenchmarkReceiver measures one verified delivery end to end over loopback.
func BenchmarkReceiver(b *testing.B) {
	r := receiver.New(receiver.Config{})
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(context.Background()) })
	r.Register(receiver.Endpoint{Name: "a", Secrets: []string{secret}})
	client := &fasthttp.HostClient{Addr: r.Addr(), MaxConns: 64}
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		var seq int64
		for pb.Next() {
			seq++
			ev := fmt.Sprintf("evt_%p_%d", req, seq)
			body := fmt.Appendf(nil, `{"id":%q,"type":"face.verified","created":1,"data":{"seq":%d}}`, ev, seq)
			req.Reset()
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI(r.URL("a"))
			req.SetBody(body)
			receiver.Sign(&req.Header, secret, schemas.DeliveryID(ev, "a"), "face.verified", time.Now().Unix(), body)
			if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("status %d err %v", resp.StatusCode(), err)
			}
		}
	})
}
