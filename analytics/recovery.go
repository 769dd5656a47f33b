package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Origin is what a resend needs of one delivery (History.Origin).
type Origin struct {
	EventID    string
	EventType  string
	AcceptedAt time.Time
	// EventPartition and EventOffset locate the event on <p>.events; -1
	// when the delivery's attempts were recorded before positions were kept.
	EventPartition int
	EventOffset    int64
	// Attempts is the highest attempt number recorded.
	Attempts int
	// Test marks a test send (no event in the log).
	Test bool
}

// Origin returns the origin of the account's endpoint's delivery; false
// when the delivery log has no such delivery.
func (h *History) Origin(ctx context.Context, accountID, endpointID, deliveryID string) (Origin, bool, error) {
	defer h.observe("origin", time.Now())
	rows, err := h.conn.Query(ctx, h.text(sqlDeliveryOrigin), accountID, endpointID, deliveryID, accountID, endpointID, deliveryID)
	if err != nil {
		return Origin{}, false, fmt.Errorf("delivery origin: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return Origin{}, false, rows.Err()
	}
	var o Origin
	var part int32
	var attempts uint16
	var test uint8
	if err := rows.Scan(&o.EventID, &o.EventType, &o.AcceptedAt, &part, &o.EventOffset, &attempts, &test); err != nil {
		return Origin{}, false, fmt.Errorf("delivery origin: %w", err)
	}
	o.AcceptedAt, o.EventPartition, o.Attempts, o.Test = o.AcceptedAt.UTC(), int(part), int(attempts), test == 1
	return o, true, nil
}

// FailedDelivery is one row of History.FailedPage.
type FailedDelivery struct {
	DeliveryID string
	Origin
}

// FailedPage returns up to limit of the endpoint's failed deliveries
// accepted in [since, until), oldest first, after the cursor (the accepted
// time, event offset and delivery id of the last one returned before; zero
// values and an offset of -2 for the first page).
func (h *History) FailedPage(ctx context.Context, accountID, endpointID string, since, until, afterAccepted time.Time, afterOffset int64, afterID string, limit int) ([]FailedDelivery, error) {
	defer h.observe("failed_page", time.Now())
	rows, err := h.conn.Query(ctx, h.text(sqlFailedPage), accountID, endpointID, since.Unix(), until.Unix(), max(afterAccepted.Unix(), 0), afterOffset, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("failed deliveries: %w", err)
	}
	defer rows.Close()
	var out []FailedDelivery
	for rows.Next() {
		var d FailedDelivery
		var part int32
		var attempts uint16
		if err := rows.Scan(&d.DeliveryID, &d.EventID, &d.EventType, &d.AcceptedAt, &part, &d.EventOffset, &attempts); err != nil {
			return nil, fmt.Errorf("failed deliveries: %w", err)
		}
		d.AcceptedAt, d.EventPartition, d.Attempts = d.AcceptedAt.UTC(), int(part), int(attempts)
		out = append(out, d)
	}
	return out, rows.Err()
}

// MaxAttempts returns, for those of the listed deliveries accepted in
// [from, to] that have attempts, the highest attempt number.
func (h *History) MaxAttempts(ctx context.Context, accountID, endpointID string, from, to time.Time, deliveryIDs []string) (map[string]int, error) {
	out := map[string]int{}
	if len(deliveryIDs) == 0 {
		return out, nil
	}
	defer h.observe("max_attempts", time.Now())
	ids := make([]any, len(deliveryIDs))
	for i, id := range deliveryIDs {
		ids[i] = id
	}
	rows, err := h.conn.Query(ctx, h.text(sqlMaxAttempts), accountID, endpointID, from.Unix(), to.Unix(), clickhouse.GroupSet{Value: ids})
	if err != nil {
		return nil, fmt.Errorf("attempts so far: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n uint16
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("attempts so far: %w", err)
		}
		out[id] = int(n)
	}
	return out, rows.Err()
}

// Failing is an endpoint whose attempts have all failed since FailingSince.
type Failing struct {
	AccountID, EndpointID string
	// FailingSince is the first failure after the last success (an hour
	// late at most: failures in the hour of the last success do not count).
	FailingSince time.Time
	// LastSuccess is zero when there was none in the history looked at.
	LastSuccess time.Time
}

// FailingEndpoints returns the endpoints attempted since attemptedSince
// whose last success (within the history since historyFrom) is before
// failingBefore and whose failures began at or before it.
func (h *History) FailingEndpoints(ctx context.Context, historyFrom, attemptedSince, failingBefore time.Time) ([]Failing, error) {
	defer h.observe("failing_endpoints", time.Now())
	rows, err := h.conn.Query(ctx, h.text(sqlFailingEndpoints), historyFrom.Unix(), attemptedSince.Unix(), failingBefore.Unix())
	if err != nil {
		return nil, fmt.Errorf("failing endpoints: %w", err)
	}
	defer rows.Close()
	var out []Failing
	for rows.Next() {
		var f Failing
		var hours, fails []time.Time
		var latest time.Time
		if err := rows.Scan(&f.AccountID, &f.EndpointID, &f.LastSuccess, &hours, &fails, &latest); err != nil {
			return nil, fmt.Errorf("failing endpoints: %w", err)
		}
		since, ok := failingSince(f.LastSuccess, hours, fails)
		if !ok || since.After(failingBefore) {
			continue
		}
		if f.LastSuccess.Unix() <= 0 {
			f.LastSuccess = time.Time{}
		}
		f.FailingSince, f.LastSuccess = since.UTC(), f.LastSuccess.UTC()
		out = append(out, f)
	}
	return out, rows.Err()
}

// failingSince is the earliest failure in the hours after the hour of the
// last success (all hours when there was none): a lower bound it never
// undercuts, so an endpoint is disabled up to an hour late, never early.
func failingSince(lastOK time.Time, hours, fails []time.Time) (time.Time, bool) {
	var since time.Time
	okHour := lastOK.Truncate(time.Hour)
	for i, h := range hours {
		if i >= len(fails) || fails[i].Unix() <= 0 || lastOK.Unix() > 0 && !h.After(okHour) {
			continue
		}
		if since.IsZero() || fails[i].Before(since) {
			since = fails[i]
		}
	}
	return since, !since.IsZero()
}
