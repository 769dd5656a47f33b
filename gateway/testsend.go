package gateway

import (
	"context"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// testTimeout bounds the whole test request: the delivery (10 s at most,
// the dispatcher client's timeout) plus recording the attempt.
const testTimeout = 15 * time.Second

// testResult is the answer of POST …/test: the seed's four fields, plus
// the delivery id and, when the attempt failed, why.
type testResult struct {
	// TestSent is true when the endpoint answered with any HTTP status.
	TestSent bool `json:"test_sent"`
	// ResponseStatus is the endpoint's status; null without a response.
	ResponseStatus *int `json:"response_status"`
	// ResponseTime is the attempt's duration in milliseconds.
	ResponseTime int64 `json:"response_time"`
	// ResponseBody is the start of the response body, at most
	// delivery.excerpt-bytes (default 1 KiB), cut at a character boundary.
	ResponseBody string  `json:"response_body"`
	DeliveryID   string  `json:"delivery_id"`
	EventID      string  `json:"event_id"`
	ErrorCode    *string `json:"error_code"`
	Error        *string `json:"error"`
}

// sampleData is the data object of a test event.
func sampleData(eventType string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"test":    true,
		"message": "This is a test " + eventType + " event sent from the Zaits dashboard or API.",
	})
	return b
}

// testEndpoint: POST /v1/webhooks/endpoints/{endpoint_id}/test. It sends a
// signed sample event through the dispatcher's delivery client and records
// the attempt (Test: true) on <p>.attempts.
func (g *Gateway) testEndpoint(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	e, ok := g.store.GetForAccount(account, id)
	if !ok {
		notFound(ctx, id)
		return
	}
	if rerr := checkBody(ctx); rerr != nil {
		rerr.write(ctx)
		return
	}
	eventType, rerr := decodeTest(ctx.PostBody())
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	res, err := g.sendTest(e, eventType)
	if err != nil {
		g.log.Error("test delivery not recorded", "endpoint", id, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the test attempt could not be recorded; retry shortly")
		return
	}
	writeData(ctx, fasthttp.StatusOK, res)
}

// sendTest delivers one sample event to e and writes the attempt record.
func (g *Gateway) sendTest(e *endpoint.Entry, eventType string) (testResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	now := time.Now().UTC()
	eventID := "evt_test_" + endpoint.RandomString(15)
	body, err := json.Marshal(schemas.Payload{ID: eventID, Type: eventType, Created: now.Unix(), Data: sampleData(eventType)})
	if err != nil {
		return testResult{}, err
	}
	deliveryID := schemas.DeliveryID(eventID, e.ID)
	r := g.delivery.Deliver(ctx, dispatcher.Request{
		URL: e.URL, Body: body, EventType: eventType, DeliveryID: deliveryID,
		Secrets: e.SigningSecrets(now), Now: now,
	})
	out := testResult{
		TestSent: r.Status > 0, ResponseTime: r.Latency.Milliseconds(), ResponseBody: r.Excerpt,
		DeliveryID: deliveryID, EventID: eventID,
	}
	a := schemas.Attempt{
		DeliveryID: deliveryID, EventID: eventID, EventType: eventType, AccountID: e.AccountID, EndpointID: e.ID,
		Attempt: 1, Outcome: schemas.OutcomeSuccess, HTTPStatus: r.Status, LatencyMS: r.Latency.Milliseconds(),
		ErrorCode: r.ErrCode, ResponseExcerpt: r.Excerpt, EventCreated: now.Unix(),
		AcceptedAt: now, AttemptedAt: now, Test: true, EventPartition: -1, EventOffset: -1,
	}
	if r.Status > 0 {
		s := r.Status
		out.ResponseStatus = &s
	}
	if r.ErrCode != "" {
		code, msg := r.ErrCode, "delivery failed"
		if r.Err != nil {
			msg = r.Err.Error()
		}
		out.ErrorCode, out.Error = &code, &msg
		a.Outcome, a.Error = schemas.OutcomeFailed, msg
	}
	b, err := json.Marshal(a)
	if err != nil {
		return testResult{}, err
	}
	if err := g.attempts.WriteMessages(ctx, kafka.Message{Key: []byte(e.ID), Value: b}); err != nil {
		return testResult{}, err
	}
	return out, nil
}
