package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/analytics"
	"github.com/zaits/webhooks/schemas"
)

// Delivery-log query limits.
const (
	historyTimeout = 5 * time.Second
	// summaryTimeout bounds the summaries of a list or get: without them
	// the answer is still served, so a slow ClickHouse must not hold it up.
	summaryTimeout = time.Second
	// DefaultStatsWindow is the stats window when none is given.
	DefaultStatsWindow = 24 * time.Hour
	// MaxStatsWindow bounds the stats window.
	MaxStatsWindow = 90 * 24 * time.Hour
)

// historyUnavailable answers when the delivery log cannot be read.
func (g *Gateway) historyUnavailable(ctx *fasthttp.RequestCtx, err error) {
	if err != nil {
		g.log.Warn("delivery log query failed", "err", err)
	}
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
	writeError(ctx, fasthttp.StatusServiceUnavailable, "history_unavailable", "the delivery history is unavailable right now; retry shortly")
}

// listDeliveries: GET /v1/webhooks/endpoints/{endpoint_id}/deliveries
// ?status=success|failed|retrying&event_type=&page=&per_page=.
func (g *Gateway) listDeliveries(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return
	}
	var issues []schemas.FieldIssue
	args := ctx.QueryArgs()
	f := analytics.DeliveryFilter{}
	if args.Has("status") {
		switch s := string(args.Peek("status")); s {
		case schemas.OutcomeSuccess, schemas.OutcomeFailed, schemas.OutcomeRetrying:
			f.Status = s
		default:
			issues = append(issues, schemas.FieldIssue{Field: "status", Issue: "must be success, failed or retrying"})
		}
	}
	if args.Has("event_type") {
		et := string(args.Peek("event_type"))
		if et != schemas.TestEventType && !schemas.IsEventType(et) {
			issues = append(issues, schemas.FieldIssue{Field: "event_type", Issue: "must be \"test\" or an event type of GET /v1/webhooks/events"})
		}
		f.EventType = et
	}
	pg := parsePage(args, &issues)
	if len(issues) > 0 {
		invalid(issues...).write(ctx)
		return
	}
	f.Page, f.PerPage = pg.page, pg.perPage
	if g.history == nil {
		g.historyUnavailable(ctx, nil)
		return
	}
	qctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	rows, total, err := g.history.Deliveries(qctx, account, id, f)
	switch {
	case errors.Is(err, analytics.ErrBadFilter):
		invalid(schemas.FieldIssue{Field: "query", Issue: err.Error()}).write(ctx)
		return
	case err != nil:
		g.historyUnavailable(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, listEnvelope{Success: true, Data: rows,
		Pagination: pagination{Page: pg.page, PerPage: pg.perPage, Total: total}})
}

// getDelivery: GET /v1/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id},
// the delivery with every attempt.
func (g *Gateway) getDelivery(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return
	}
	did, ok := g.deliveryParam(ctx)
	if !ok {
		return
	}
	qctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	d, found, err := g.history.Delivery(qctx, account, id, did)
	switch {
	case err != nil:
		g.historyUnavailable(ctx, err)
	case !found:
		writeError(ctx, fasthttp.StatusNotFound, "delivery_not_found", "no delivery "+did+" for this endpoint")
	default:
		writeData(ctx, fasthttp.StatusOK, d)
	}
}

// isDeliveryID reports whether s has the form of schemas.DeliveryID.
func isDeliveryID(s string) bool {
	rest, ok := strings.CutPrefix(s, "del_")
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// endpointStats: GET /v1/webhooks/endpoints/{endpoint_id}/stats?window=24h,
// with &bucket=1m the window's series too.
func (g *Gateway) endpointStats(ctx *fasthttp.RequestCtx, account string) {
	id := pathID(ctx)
	if _, ok := g.store.GetForAccount(account, id); !ok {
		notFound(ctx, id)
		return
	}
	args := ctx.QueryArgs()
	window := DefaultStatsWindow
	if args.Has("window") {
		w, err := parseWindow(string(args.Peek("window")))
		if err != nil {
			invalid(schemas.FieldIssue{Field: "window", Issue: err.Error()}).write(ctx)
			return
		}
		window = w
	}
	var bucket time.Duration
	if args.Has("bucket") {
		b, err := parseWindow(string(args.Peek("bucket")))
		if err == nil {
			err = analytics.ValidateSeries(window, b)
		}
		if err != nil {
			invalid(schemas.FieldIssue{Field: "bucket", Issue: bucketIssue}).write(ctx)
			return
		}
		bucket = b
	}
	if g.history == nil {
		g.historyUnavailable(ctx, nil)
		return
	}
	qctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	var s analytics.Stats
	var err error
	if bucket > 0 {
		s, err = g.history.StatsSeries(qctx, account, id, window, bucket)
	} else {
		s, err = g.history.Stats(qctx, account, id, window)
	}
	if err != nil {
		g.historyUnavailable(ctx, err)
		return
	}
	writeData(ctx, fasthttp.StatusOK, s)
}

// bucketIssue explains the bucket parameter's bounds.
var bucketIssue = fmt.Sprintf("must be a whole number of minutes such as 1m, 15m or 1h, at most the window, "+
	"with at most %d buckets in the window (24h in 1m buckets, 7d in 10m, 90d in 2h)", analytics.MaxBuckets)

// parseWindow reads a duration such as "90m", "24h" or "7d" (1m..90d).
func parseWindow(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > 1000 {
			d = MaxStatsWindow + 1
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < time.Minute || d > MaxStatsWindow {
		return 0, errors.New("must be a duration from 1m to 90d such as 1h, 24h or 7d")
	}
	return d, nil
}

// HeaderSummaries is set to "unavailable" on an endpoint answer whose
// last_delivery and success_rate are null because the delivery log could
// not be read in time (rather than because there were no deliveries).
const HeaderSummaries = "X-Zaits-Summaries"

// summaries fills last_delivery and success_rate of views from the delivery
// log. Without a delivery log, or when it cannot be read, they stay null:
// the list is still served, never with invented numbers, and a read that
// failed says so in HeaderSummaries.
func (g *Gateway) summaries(ctx *fasthttp.RequestCtx, account string, views []endpointView) {
	if g.history == nil || len(views) == 0 {
		return
	}
	ids := make([]string, len(views))
	for i, v := range views {
		ids[i] = v.ID
	}
	window := g.cfg.History.SuccessRateWindow // set: g.history exists, and the defaults are applied
	qctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
	defer cancel()
	m, err := g.history.Summaries(qctx, account, ids, window)
	if err != nil {
		g.log.Warn("endpoint summaries unavailable; last_delivery and success_rate left null", "err", err)
		ctx.Response.Header.Set(HeaderSummaries, "unavailable")
		return
	}
	for i := range views {
		if s, ok := m[views[i].ID]; ok {
			views[i].LastDelivery, views[i].SuccessRate = s.LastDelivery, s.SuccessRate
		}
	}
}

// deliveryParam is the route's delivery id when it is well formed and the
// delivery log is configured; otherwise it has answered (404, 503).
func (g *Gateway) deliveryParam(ctx *fasthttp.RequestCtx) (string, bool) {
	did, _ := ctx.UserValue("delivery_id").(string)
	if !isDeliveryID(did) {
		writeError(ctx, fasthttp.StatusNotFound, "delivery_not_found", "no delivery "+schemas.Clip(did, 64)+" for this endpoint")
		return "", false
	}
	if g.history == nil {
		g.historyUnavailable(ctx, nil)
		return "", false
	}
	return did, true
}
