package router

import (
	"context"
	"fmt"
	"time"

	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// healthHistory is how far back the failing-endpoint check reads the
// endpoint_health rollup for an endpoint's last success; an endpoint with
// none in it counts as never having succeeded.
const healthHistory = 30 * 24 * time.Hour

// watchHealth disables, every HealthInterval until ctx ends, the endpoints
// whose every attempt failed for DisableAfter: counted from the first
// failure after their last success, and not before they were last
// activated (a re-enabled endpoint gets the whole period again). It runs in
// the router that owns partition 0 of <p>.events, so in one router.
func (r *Router) watchHealth(ctx context.Context) {
	for {
		if err := r.checkHealth(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.log.Warn("failing-endpoint check failed; retried at the next interval", "err", err)
		}
		if !retry.Sleep(ctx, r.cfg.HealthInterval) {
			return
		}
	}
}

// checkHealth is one round of watchHealth at time now.
func (r *Router) checkHealth(ctx context.Context, now time.Time) error {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cutoff := now.Add(-r.cfg.DisableAfter)
	// Still attempted: within two check intervals (and an hour, the rollup's step).
	recent := now.Add(-2*r.cfg.HealthInterval - time.Hour)
	failing, err := r.history.FailingEndpoints(qctx, now.Add(-healthHistory), recent, cutoff)
	if err != nil {
		return err
	}
	for _, f := range failing {
		e, ok := r.store.Get(f.EndpointID)
		if !ok || e.AccountID != f.AccountID || !e.Active {
			continue
		}
		active := e.CreatedAt
		if e.ActivatedAt != nil {
			active = *e.ActivatedAt
		}
		since := maxTime(f.FailingSince, active)
		if since.After(cutoff) {
			continue
		}
		detail := fmt.Sprintf("every attempt failed since %s (%s or more)", since.UTC().Format(time.RFC3339), r.cfg.DisableAfter)
		if _, err := r.store.Disable(ctx, e.ID, schemas.DisabledFailing, detail, now); err != nil {
			return err
		}
	}
	return nil
}
