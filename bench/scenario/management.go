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
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(t.GatewayURL + "/v1/webhooks/endpoints")
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	timeout := 15 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := fasthttp.DoTimeout(req, resp, timeout); err != nil {
		return createdEndpoint{}, fmt.Errorf("create endpoint: %w", err)
	}
	if resp.StatusCode() != fasthttp.StatusCreated && resp.StatusCode() != fasthttp.StatusOK {
		return createdEndpoint{}, fmt.Errorf("create endpoint: status %d: %s", resp.StatusCode(), clip(resp.Body(), 300))
	}
	var env struct {
		Data createdEndpoint `json:"data"`
	}
	if err := json.Unmarshal(resp.Body(), &env); err != nil || env.Data.ID == "" || env.Data.Secret == "" {
		return createdEndpoint{}, fmt.Errorf("create endpoint: answer without id and secret (%v): %s", err, clip(resp.Body(), 300))
	}
	return env.Data, nil
}
