package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/bench/suite"
)

// createdEndpoint is the part of the create answer the bench needs.
type createdEndpoint struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// createEndpoint registers url for events through the management API
// (POST /v1/webhooks/endpoints, the seed's contract) and returns its id and secret.
func createEndpoint(ctx context.Context, t *suite.Target, url, description string, events []string) (createdEndpoint, error) {
	body, err := json.Marshal(map[string]any{"url": url, "events": events, "description": description, "active": true})
	if err != nil {
		return createdEndpoint{}, err
	}
	status, answer, err := manage(ctx, t, fasthttp.MethodPost, "/v1/webhooks/endpoints", body)
	if err != nil {
		return createdEndpoint{}, fmt.Errorf("create endpoint: %w", err)
	}
	if status != fasthttp.StatusCreated && status != fasthttp.StatusOK {
		return createdEndpoint{}, fmt.Errorf("create endpoint: status %d: %s", status, clip(answer, 300))
	}
	var env struct {
		Data createdEndpoint `json:"data"`
	}
	if err := json.Unmarshal(answer, &env); err != nil || env.Data.ID == "" || env.Data.Secret == "" {
		return createdEndpoint{}, fmt.Errorf("create endpoint: answer without id and secret (%v): %s", err, clip(answer, 300))
	}
	return env.Data, nil
}

// deleteEndpoint removes an endpoint a run registered
// (DELETE /v1/webhooks/endpoints/{id}), so that later runs on the same
// system do not also deliver to it.
func deleteEndpoint(ctx context.Context, t *suite.Target, id string) error {
	status, answer, err := manage(ctx, t, fasthttp.MethodDelete, "/v1/webhooks/endpoints/"+id, nil)
	if err != nil {
		return fmt.Errorf("delete endpoint %s: %w", id, err)
	}
	if status != fasthttp.StatusOK {
		return fmt.Errorf("delete endpoint %s: status %d: %s", id, status, clip(answer, 300))
	}
	return nil
}

// manage makes one management API request with the target's API key and
// returns the status and a copy of the body.
func manage(ctx context.Context, t *suite.Target, method, path string, body []byte) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(t.GatewayURL + path)
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	timeout := 15 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := fasthttp.DoTimeout(req, resp, timeout); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// CreateEndpoint registers url for the bench's event type through the
// management API and returns its id and secret (for runs outside the
// suite, such as the chaos matrix).
func CreateEndpoint(ctx context.Context, t *suite.Target, url, description string) (id, secret string, err error) {
	ep, err := createEndpoint(ctx, t, url, description, []string{EventType})
	return ep.ID, ep.Secret, err
}
