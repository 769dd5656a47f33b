package gateway

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// writeTimeout bounds one management write (Kafka acks=all + read-your-writes).
const writeTimeout = 10 * time.Second

// endpointView is an endpoint as the API shows it. Secret is set only in
// the answer of a create (the one time it is shown).
type endpointView struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	Secret      string    `json:"secret,omitempty"`
	Active      bool      `json:"active"`
	Ordering    string    `json:"ordering"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// DisabledReason and DisabledAt say why and when the system disabled
	// the endpoint ("gone": it answered 410; "failing": every attempt failed
	// for days); null otherwise. PUT {"active": true} clears them.
	DisabledReason *string    `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	// LastDelivery and SuccessRate come from the delivery log; null until
	// there is one (see summaries).
	LastDelivery *time.Time `json:"last_delivery"`
	SuccessRate  *float64   `json:"success_rate"`
	// Delivery options (options.go): header values masked, filter and
	// rate_limit null when not set.
	Headers   map[string]string `json:"headers"`
	Filter    json.RawMessage   `json:"filter"`
	RateLimit *int              `json:"rate_limit"`
}

func viewOf(e *endpoint.Entry) endpointView {
	v := endpointView{
		ID: e.ID, URL: e.URL, Events: e.Events, Description: e.Description, Active: e.Active,
		Ordering: e.Ordering, Version: e.Version, CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(),
	}
	if e.DisabledReason != "" {
		reason := e.DisabledReason
		v.DisabledReason, v.DisabledAt = &reason, e.DisabledAt
	}
	withOptions(&v, e)
	return v
}

type dataEnvelope struct {
	Success bool `json:"success"`
	Data    any  `json:"data"`
}

type pagination struct {
	Page    int `json:"page"`
	PerPage int `json:"per_page"`
	Total   int `json:"total"`
}

type listEnvelope struct {
	Success    bool       `json:"success"`
	Data       any        `json:"data"`
	Pagination pagination `json:"pagination"`
}

func writeData(ctx *fasthttp.RequestCtx, status int, data any) {
	writeJSON(ctx, status, dataEnvelope{Success: true, Data: data})
}

// writeEndpoint answers with one endpoint and its version as the ETag.
func writeEndpoint(ctx *fasthttp.RequestCtx, status int, v endpointView) {
	ctx.Response.Header.Set(fasthttp.HeaderETag, `"`+strconv.FormatInt(v.Version, 10)+`"`)
	writeData(ctx, status, v)
}

func notFound(ctx *fasthttp.RequestCtx, id string) {
	writeError(ctx, fasthttp.StatusNotFound, "endpoint_not_found", "no webhook endpoint "+schemas.Clip(id, 64))
}

// storeError answers a failed store write.
func (g *Gateway) storeError(ctx *fasthttp.RequestCtx, id string, err error) {
	switch {
	case errors.Is(err, endpoint.ErrNotFound):
		notFound(ctx, id)
	case errors.Is(err, endpoint.ErrRotationInProgress):
		writeError(ctx, fasthttp.StatusConflict, "rotation_in_progress",
			"the secret the last rotation replaced still signs ("+err.Error()+"); retire it with DELETE /v1/webhooks/endpoints/"+schemas.Clip(id, 64)+"/secret/previous once your receivers use the new secret, then rotate again")
	case errors.Is(err, endpoint.ErrConflict):
		writeError(ctx, fasthttp.StatusConflict, "conflict",
			"the endpoint was changed by another request; fetch it again and retry (If-Match carries the version you expect)")
	case errors.Is(err, endpoint.ErrNotVisible):
		g.log.Error("endpoint write not yet visible", "endpoint", id, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable",
			"the write was stored but this gateway has not read it back yet ("+err.Error()+"); it will take effect: fetch the endpoint before repeating a create, or a second endpoint is made")
	default:
		g.log.Error("endpoint write failed", "endpoint", id, "err", err)
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the endpoint store is unavailable; retry shortly")
	}
}

func pathID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue("endpoint_id").(string)
	return id
}

func (g *Gateway) urlPolicy() urlPolicy {
	return urlPolicy{AllowHTTP: g.cfg.AllowHTTP || g.cfg.Dev, AllowPrivate: g.cfg.AllowPrivate || g.cfg.Dev, Refused: g.delivery.AddressRefused}
}

// createEndpoint: POST /v1/webhooks/endpoints.
func (g *Gateway) createEndpoint(ctx *fasthttp.RequestCtx, account string) {
	if rerr := checkBody(ctx); rerr != nil {
		rerr.write(ctx)
		return
	}
	in, rerr := decodeEndpoint(ctx.PostBody(), true, g.urlPolicy())
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	ep := schemas.Endpoint{AccountID: account, Active: true}
	in.applyTo(&ep) // decodeEndpoint required url and events for a create
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	e, secret, err := g.store.Create(wctx, ep, in.Headers...)
	if err != nil {
		g.storeError(ctx, "", err)
		return
	}
	v := viewOf(e)
	v.Secret = secret
	ctx.Response.Header.Set(fasthttp.HeaderLocation, "/v1/webhooks/endpoints/"+e.ID)
	writeEndpoint(ctx, fasthttp.StatusCreated, v)
}

// listEndpoints: GET /v1/webhooks/endpoints?active=&page=&per_page=.
func (g *Gateway) listEndpoints(ctx *fasthttp.RequestCtx, account string) {
	var issues []schemas.FieldIssue
	args := ctx.QueryArgs()
	active := parseBool(args, "active", &issues)
	pg := parsePage(args, &issues)
	if len(issues) > 0 {
		invalid(issues...).write(ctx)
		return
	}
	all := g.store.List(account)
	kept := all[:0:0]
	for _, e := range all {
		if active == nil || e.Active == *active {
			kept = append(kept, e)
		}
	}
	lo, hi := pg.bounds(len(kept))
	items := make([]endpointView, 0, hi-lo)
	for _, e := range kept[lo:hi] {
		items = append(items, viewOf(e))
	}
	g.summaries(ctx, account, items)
	writeJSON(ctx, fasthttp.StatusOK, listEnvelope{Success: true, Data: items,
		Pagination: pagination{Page: pg.page, PerPage: pg.perPage, Total: len(kept)}})
}

// getEndpoint: GET /v1/webhooks/endpoints/{endpoint_id}.
func (g *Gateway) getEndpoint(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	e, ok := g.store.GetForAccount(account, id)
	if !ok {
		notFound(ctx, id)
		return
	}
	items := []endpointView{viewOf(e)}
	g.summaries(ctx, account, items)
	writeEndpoint(ctx, fasthttp.StatusOK, items[0])
}

// updateEndpoint: PUT /v1/webhooks/endpoints/{endpoint_id}, a partial
// update; If-Match (optional) names the version the change is based on.
func (g *Gateway) updateEndpoint(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	cur, ok := g.store.GetForAccount(account, id)
	if !ok {
		notFound(ctx, id)
		return
	}
	if rerr := checkBody(ctx); rerr != nil {
		rerr.write(ctx)
		return
	}
	match, rerr := parseIfMatch(ctx)
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	version, ok := match.expected(cur.Version)
	if !ok {
		g.storeError(ctx, id, endpoint.ErrConflict)
		return
	}
	in, rerr := decodeEndpoint(ctx.PostBody(), false, g.urlPolicy())
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	e, err := g.store.Update(wctx, account, id, version, func(ep *schemas.Endpoint) error {
		in.applyTo(ep)
		if in.HeadersSet {
			ep.Headers = g.store.SealHeaders(ep.ID, in.Headers)
		}
		return nil
	})
	if err != nil {
		g.storeError(ctx, id, err)
		return
	}
	items := []endpointView{viewOf(e)}
	g.summaries(ctx, account, items)
	writeEndpoint(ctx, fasthttp.StatusOK, items[0])
}

type deletedView struct {
	Message    string `json:"message"`
	EndpointID string `json:"endpoint_id"`
}

// deleteEndpoint: DELETE /v1/webhooks/endpoints/{endpoint_id}.
func (g *Gateway) deleteEndpoint(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	cur, ok := g.store.GetForAccount(account, id)
	if !ok {
		notFound(ctx, id)
		return
	}
	match, rerr := parseIfMatch(ctx)
	if rerr != nil {
		rerr.write(ctx)
		return
	}
	version, ok := match.expected(cur.Version)
	if !ok {
		g.storeError(ctx, id, endpoint.ErrConflict)
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := g.store.Delete(wctx, account, id, version); err != nil {
		g.storeError(ctx, id, err)
		return
	}
	writeData(ctx, fasthttp.StatusOK, deletedView{Message: "Webhook endpoint deleted successfully", EndpointID: id})
}

type rotatedView struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// PreviousSecretExpiresAt is when the replaced secret stops signing;
	// null when the overlap is 0.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	Version                 int64      `json:"version"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// rotateSecret: POST /v1/webhooks/endpoints/{endpoint_id}/secret/rotate.
func (g *Gateway) rotateSecret(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if len(ctx.PostBody()) > 0 {
		invalid(schemas.FieldIssue{Field: "body", Issue: "must be empty"}).write(ctx)
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	e, secret, err := g.store.Rotate(wctx, account, id)
	if err != nil {
		g.storeError(ctx, id, err)
		return
	}
	v := rotatedView{ID: e.ID, Secret: secret, Version: e.Version, UpdatedAt: e.UpdatedAt.UTC()}
	var latest time.Time
	for _, s := range e.Secrets {
		if s.ExpiresAt != nil && s.ExpiresAt.After(latest) {
			latest = *s.ExpiresAt
		}
	}
	if !latest.IsZero() {
		t := latest.UTC().Truncate(time.Second)
		v.PreviousSecretExpiresAt = &t
	}
	ctx.Response.Header.Set(fasthttp.HeaderETag, `"`+strconv.FormatInt(e.Version, 10)+`"`)
	writeData(ctx, fasthttp.StatusOK, v)
}

// retirePreviousSecret: DELETE /v1/webhooks/endpoints/{endpoint_id}/secret/previous.
// The secret the last rotation replaced stops signing now (instead of at
// the end of the overlap); X-Zaits-Signature then carries the current
// secret's signature. Without one it changes nothing.
func (g *Gateway) retirePreviousSecret(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	e, err := g.store.RetirePrevious(wctx, account, id)
	if err != nil {
		g.storeError(ctx, id, err)
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderETag, `"`+strconv.FormatInt(e.Version, 10)+`"`)
	writeData(ctx, fasthttp.StatusOK, retiredView{ID: e.ID, Version: e.Version, UpdatedAt: e.UpdatedAt.UTC()})
}

type retiredView struct {
	ID        string    `json:"id"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// listEvents: GET /v1/webhooks/events, the catalogue.
func (g *Gateway) listEvents(ctx *fasthttp.RequestCtx, _ string) {
	writeData(ctx, fasthttp.StatusOK, struct {
		Events []schemas.EventType `json:"events"`
	}{schemas.Catalogue})
}

// openAPI: GET /v1/openapi.json (no key needed: the contract is public).
func (g *Gateway) openAPI(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(schemas.OpenAPI)
}
