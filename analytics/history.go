package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zaits/webhooks/schemas"
)

// Delivery is one row of GET /v1/webhooks/endpoints/{endpoint_id}/deliveries,
// field for field as the seed. Times are RFC 3339 in UTC, whole seconds.
type Delivery struct {
	ID        string `json:"id"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Status is the latest attempt's outcome: success, failed or retrying.
	Status string `json:"status"`
	// Attempts is the number of distinct attempts made so far.
	Attempts int `json:"attempts"`
	// ResponseStatus is the latest attempt's HTTP status; null without a response.
	ResponseStatus *int `json:"response_status"`
	// ResponseTime is the latest attempt's duration in milliseconds.
	ResponseTime int64 `json:"response_time"`
	// ErrorMessage is the latest attempt's error; null when it succeeded.
	ErrorMessage *string `json:"error_message"`
	// CreatedAt is when the event was accepted.
	CreatedAt time.Time `json:"created_at"`
	// LastAttempt is when the latest attempt started.
	LastAttempt time.Time `json:"last_attempt"`
}

// AttemptDetail is one attempt of a DeliveryDetail.
type AttemptDetail struct {
	Attempt     int       `json:"attempt"`
	AttemptedAt time.Time `json:"attempted_at"`
	// Status is the attempt's outcome: success, retrying or failed.
	Status         string  `json:"status"`
	ResponseStatus *int    `json:"response_status"`
	ResponseTime   int64   `json:"response_time"`
	ErrorCode      *string `json:"error_code"`
	ErrorMessage   *string `json:"error_message"`
	// ResponseExcerpt is the start of the response body (at most 1 KiB).
	ResponseExcerpt string `json:"response_excerpt"`
	// NextRetryAt is when the next attempt is due (status retrying only).
	NextRetryAt *time.Time `json:"next_retry_at"`
	Test        bool       `json:"test"`
	// Trigger is why the attempt's run was made: null for the live
	// delivery, else resend, recover, replay or redrive.
	Trigger *string `json:"trigger"`
}

// DeliveryDetail is GET /v1/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id}:
// the list row plus every attempt, oldest first.
type DeliveryDetail struct {
	Delivery
	AttemptList []AttemptDetail `json:"attempt_history"`
}

// DeliveryFilter selects and pages Deliveries. Zero values: no status or
// event-type filter, page 1, DefaultPerPage rows.
type DeliveryFilter struct {
	// Status is "", success, failed or retrying.
	Status string
	// EventType is "" or an event type.
	EventType string
	// Page is 1-based.
	Page int
	// PerPage is 1..MaxPerPage.
	PerPage int
}

// Page sizes of Deliveries.
const (
	DefaultPerPage = 25
	MaxPerPage     = 100
)

// ErrBadFilter is wrapped by History methods for invalid input (a 400).
var ErrBadFilter = errors.New("invalid filter")

// Validate reports a bad status, page or per_page (wrapping ErrBadFilter).
func (f *DeliveryFilter) Validate() error {
	var errs []error
	switch f.Status {
	case "", schemas.OutcomeSuccess, schemas.OutcomeFailed, schemas.OutcomeRetrying:
	default:
		errs = append(errs, fmt.Errorf("%w: status must be success, failed or retrying, not %q", ErrBadFilter, f.Status))
	}
	if f.Page < 0 {
		errs = append(errs, fmt.Errorf("%w: page must be 1 or more", ErrBadFilter))
	}
	if f.PerPage < 0 || f.PerPage > MaxPerPage {
		errs = append(errs, fmt.Errorf("%w: per_page must be 1..%d", ErrBadFilter, MaxPerPage))
	}
	return errors.Join(errs...)
}

func (f DeliveryFilter) limits() (page, perPage int) {
	page, perPage = f.Page, f.PerPage
	if page == 0 {
		page = 1
	}
	if perPage == 0 {
		perPage = DefaultPerPage
	}
	return page, perPage
}

// Stats is GET /v1/webhooks/endpoints/{endpoint_id}/stats?window=…: the
// endpoint's deliveries accepted within the window.
type Stats struct {
	Window    string `json:"window"`
	Total     int    `json:"total"`
	Succeeded int    `json:"success"`
	Failed    int    `json:"failed"`
	Retrying  int    `json:"retrying"`
	// SuccessRate is success / (success + failed); null when both are 0.
	SuccessRate *float64 `json:"success_rate"`
	// Attempts counts the distinct attempts of those deliveries.
	Attempts int `json:"attempts"`
	// ResponseTime holds attempt-duration percentiles in ms; null without attempts.
	ResponseTime *Percentiles `json:"response_time"`
	// Series is the window in buckets, oldest first; only when asked for
	// (StatsSeries), absent otherwise.
	Series []Bucket `json:"series,omitempty"`
}

// Bucket is one interval of a Stats series: the deliveries accepted in
// [Start, Start+bucket) within the window. Buckets start at multiples of
// the bucket length since the Unix epoch, so the first and the last one
// of a window are partial; buckets without deliveries are included.
type Bucket struct {
	Start   time.Time `json:"start"`
	Total   int       `json:"total"`
	Success int       `json:"success"`
	Failed  int       `json:"failed"`
	// P50MS and P99MS are publish→receipt percentiles (ms) of the
	// bucket's successful deliveries: acceptance to the start of the
	// successful attempt (whole seconds, the delivery log's resolution)
	// plus that attempt's duration. Null without successful deliveries.
	P50MS *float64 `json:"p50_ms"`
	P99MS *float64 `json:"p99_ms"`
}

// Series bounds.
const (
	// MinBucket is the shortest series bucket.
	MinBucket = time.Minute
	// MaxBuckets bounds window / bucket, so that a series has at most
	// MaxBuckets+1 entries (the first and last bucket partial).
	MaxBuckets = 1440
)

// Percentiles of attempt durations, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Summary is what the endpoint list shows for one endpoint.
type Summary struct {
	// LastDelivery is the latest attempt's start; null when there was none.
	LastDelivery *time.Time `json:"last_delivery"`
	// SuccessRate is successful / finished (success + failed) deliveries
	// accepted within the window; null when none finished.
	SuccessRate *float64 `json:"success_rate"`
}

// History answers the delivery-log questions of the gateway. Every method
// reads only the rows of the given account AND endpoint(s).
type History struct {
	conn    driver.Conn
	db      string
	seconds *prometheus.HistogramVec
	sql     map[string]string // statement name → text in db
}

// NewHistory reads the delivery log in database db through conn. Its
// metric is zaits_analytics_query_seconds{query}.
func NewHistory(conn driver.Conn, db string, reg prometheus.Registerer) (*History, error) {
	h := &History{conn: conn, db: db, sql: map[string]string{}}
	h.seconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "zaits_analytics_query_seconds",
		Help:    "Duration of delivery-log queries.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"query"})
	if err := reg.Register(h.seconds); err != nil {
		return nil, fmt.Errorf("analytics history metrics: %w", err)
	}
	for _, stmt := range statements {
		h.sql[stmt.name] = stmt.in(db)
	}
	return h, nil
}

// text is stmt with this history's database put in.
func (h *History) text(stmt statement) string { return h.sql[stmt.name] }

func (h *History) observe(name string, start time.Time) {
	h.seconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// Deliveries returns one page of an endpoint's deliveries, newest first
// (by created_at, then id), and the number of deliveries matching f.
func (h *History) Deliveries(ctx context.Context, accountID, endpointID string, f DeliveryFilter) ([]Delivery, int, error) {
	if err := f.Validate(); err != nil {
		return nil, 0, err
	}
	defer h.observe("deliveries", time.Now())
	page, perPage := f.limits()
	offset := (page - 1) * perPage
	var total uint64
	var ids pageIDs
	if f.Status == schemas.OutcomeRetrying {
		if err := h.conn.QueryRow(ctx, h.text(sqlRetryingTotal), accountID, endpointID, f.EventType, f.EventType).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("count deliveries: %w", err)
		}
		if uint64(offset) < total {
			var err error
			if ids, err = h.ids(ctx, sqlRetryingIDs, accountID, endpointID, f.EventType, f.EventType, offset, perPage); err != nil {
				return nil, 0, err
			}
		}
	} else {
		if err := h.conn.QueryRow(ctx, h.text(sqlDeliveriesTotal), accountID, endpointID, f.EventType, f.EventType, f.Status, f.Status, f.Status,
			accountID, endpointID, accountID, endpointID).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("count deliveries: %w", err)
		}
		// A full page among the last day's deliveries is the page: every
		// older delivery sorts after all of them. Else look at everything.
		for _, since := range []int64{time.Now().Add(-recentWindow).Unix(), 0} {
			if uint64(offset) >= total {
				break
			}
			var err error
			if ids, err = h.ids(ctx, sqlDeliveryIDs, accountID, endpointID, since, f.EventType, f.EventType, f.Status, f.Status, f.Status,
				accountID, endpointID, accountID, endpointID, offset, perPage); err != nil {
				return nil, 0, err
			}
			if len(ids.ids) == perPage {
				break
			}
		}
	}
	out := []Delivery{}
	if len(ids.ids) == 0 {
		return out, int(total), nil
	}
	rows, err := h.conn.Query(ctx, h.text(sqlDeliveryRows), accountID, endpointID, ids.from.Unix(), ids.to.Unix(), clickhouse.GroupSet{Value: ids.ids})
	if err != nil {
		return nil, 0, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d             Delivery
			attempts      uint64
			status        uint16
			latency       uint32
			errMsg        string
			created, last time.Time
		)
		if err := rows.Scan(&d.ID, &d.EventID, &d.EventType, &d.Status, &attempts, &status, &latency, &errMsg, &created, &last); err != nil {
			return nil, 0, fmt.Errorf("list deliveries: %w", err)
		}
		d.Attempts, d.ResponseStatus, d.ResponseTime, d.ErrorMessage = int(attempts), statusPtr(status), int64(latency), strPtr(errMsg)
		d.CreatedAt, d.LastAttempt = created.UTC(), last.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list deliveries: %w", err)
	}
	return out, int(total), nil
}

// recentWindow is where Deliveries looks for a page first.
const recentWindow = 24 * time.Hour

// pageIDs are the delivery ids of one page and their accepted_at range.
type pageIDs struct {
	ids      []any
	from, to time.Time
}

// ids runs a page-of-delivery-ids query.
func (h *History) ids(ctx context.Context, query statement, args ...any) (pageIDs, error) {
	var p pageIDs
	rows, err := h.conn.Query(ctx, h.text(query), args...)
	if err != nil {
		return p, fmt.Errorf("page of deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var accepted time.Time
		if err := rows.Scan(&id, &accepted); err != nil {
			return p, fmt.Errorf("page of deliveries: %w", err)
		}
		if len(p.ids) == 0 || accepted.Before(p.from) {
			p.from = accepted
		}
		if len(p.ids) == 0 || accepted.After(p.to) {
			p.to = accepted
		}
		p.ids = append(p.ids, id)
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("page of deliveries: %w", err)
	}
	return p, nil
}

// Delivery returns one delivery with every attempt; found is false when the
// account's endpoint has no such delivery.
func (h *History) Delivery(ctx context.Context, accountID, endpointID, deliveryID string) (DeliveryDetail, bool, error) {
	defer h.observe("delivery", time.Now())
	rows, err := h.conn.Query(ctx, h.text(sqlDeliveryAttempts), accountID, endpointID, deliveryID, accountID, endpointID, deliveryID)
	if err != nil {
		return DeliveryDetail{}, false, fmt.Errorf("delivery attempts: %w", err)
	}
	defer rows.Close()
	d := DeliveryDetail{Delivery: Delivery{ID: deliveryID}, AttemptList: []AttemptDetail{}}
	for rows.Next() {
		var (
			a                             AttemptDetail
			n, status                     uint16
			latency                       uint32
			eventID, eventType, code, msg string
			trigger                       string
			accepted, attempted, next     time.Time
			test                          uint8
		)
		if err := rows.Scan(&n, &eventID, &eventType, &a.Status, &status, &latency, &code, &msg, &a.ResponseExcerpt, &accepted, &attempted, &next, &test, &trigger); err != nil {
			return DeliveryDetail{}, false, fmt.Errorf("delivery attempts: %w", err)
		}
		a.Attempt, a.AttemptedAt, a.ResponseStatus, a.ResponseTime = int(n), attempted.UTC(), statusPtr(status), int64(latency)
		a.ErrorCode, a.ErrorMessage, a.Test, a.Trigger = strPtr(code), strPtr(msg), test == 1, strPtr(trigger)
		if next.Unix() > 0 {
			t := next.UTC()
			a.NextRetryAt = &t
		}
		if len(d.AttemptList) == 0 {
			d.EventID, d.EventType, d.CreatedAt = eventID, eventType, accepted.UTC()
		}
		d.AttemptList = append(d.AttemptList, a)
	}
	if err := rows.Err(); err != nil {
		return DeliveryDetail{}, false, fmt.Errorf("delivery attempts: %w", err)
	}
	if len(d.AttemptList) == 0 {
		return DeliveryDetail{}, false, nil
	}
	// The summary is the list row's: the latest attempt's response
	// (rows are ordered by attempt number; within one the latest copy was
	// chosen) and the status rule of sqlDeliveryRows.
	latest := d.AttemptList[len(d.AttemptList)-1]
	d.Status, d.Attempts, d.ResponseStatus, d.ResponseTime, d.ErrorMessage = schemas.OutcomeRetrying, len(d.AttemptList), latest.ResponseStatus, latest.ResponseTime, latest.ErrorMessage
	for _, a := range d.AttemptList {
		if a.AttemptedAt.After(d.LastAttempt) {
			d.LastAttempt = a.AttemptedAt
		}
		if a.Status == schemas.OutcomeSuccess || (a.Status == schemas.OutcomeFailed && d.Status != schemas.OutcomeSuccess) {
			d.Status = a.Status
		}
	}
	return d, true, nil
}

// Stats counts an endpoint's deliveries accepted within window (ending now)
// by status, with the success rate and attempt-duration percentiles.
func (h *History) Stats(ctx context.Context, accountID, endpointID string, window time.Duration) (Stats, error) {
	if window <= 0 {
		return Stats{}, fmt.Errorf("%w: window must be positive", ErrBadFilter)
	}
	defer h.observe("stats", time.Now())
	return h.stats(ctx, accountID, endpointID, window, time.Now().Add(-window).Unix())
}

// StatsSeries is Stats plus the window's Series in buckets of bucket (a
// whole number of minutes, at least MinBucket, at most window, with
// window/bucket ≤ MaxBuckets). Totals and series read the same deliveries.
func (h *History) StatsSeries(ctx context.Context, accountID, endpointID string, window, bucket time.Duration) (Stats, error) {
	if err := ValidateSeries(window, bucket); err != nil {
		return Stats{}, err
	}
	defer h.observe("stats_series", time.Now())
	now := time.Now()
	since := now.Add(-window).Unix()
	s, err := h.stats(ctx, accountID, endpointID, window, since)
	if err != nil {
		return Stats{}, err
	}
	if s.Series, err = h.series(ctx, accountID, endpointID, since, now.Unix(), int64(bucket/time.Second)); err != nil {
		return Stats{}, err
	}
	return s, nil
}

// ValidateSeries reports a window and bucket StatsSeries refuses
// (wrapping ErrBadFilter).
func ValidateSeries(window, bucket time.Duration) error {
	switch {
	case window <= 0:
		return fmt.Errorf("%w: window must be positive", ErrBadFilter)
	case bucket < MinBucket || bucket%time.Minute != 0:
		return fmt.Errorf("%w: bucket must be a whole number of minutes, at least 1m", ErrBadFilter)
	case bucket > window:
		return fmt.Errorf("%w: bucket must not be longer than the window", ErrBadFilter)
	case window/bucket > MaxBuckets || (window/bucket == MaxBuckets && window%bucket != 0):
		return fmt.Errorf("%w: window / bucket must be at most %d buckets", ErrBadFilter, MaxBuckets)
	}
	return nil
}

// series reads the buckets of [since, now] and fills the empty ones.
func (h *History) series(ctx context.Context, accountID, endpointID string, since, now, bucket int64) ([]Bucket, error) {
	first, last := since/bucket, now/bucket
	out := make([]Bucket, last-first+1)
	for i := range out {
		out[i].Start = time.Unix((first+int64(i))*bucket, 0).UTC()
	}
	at := func(b int64) *Bucket {
		if b < first || b > last {
			return nil // accepted after now (clock skew): not in the window
		}
		return &out[b-first]
	}
	rows, err := h.conn.Query(ctx, h.text(sqlSeriesCounts), bucket, accountID, endpointID, since)
	if err != nil {
		return nil, fmt.Errorf("series counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b uint32
		var all, ok, failed uint64
		if err := rows.Scan(&b, &all, &ok, &failed); err != nil {
			return nil, fmt.Errorf("series counts: %w", err)
		}
		if p := at(int64(b)); p != nil {
			p.Total, p.Success, p.Failed = int(all), int(ok), int(failed)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("series counts: %w", err)
	}
	rows.Close()
	rows, err = h.conn.Query(ctx, h.text(sqlSeriesLatency), bucket, accountID, endpointID, since)
	if err != nil {
		return nil, fmt.Errorf("series latency: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b uint32
		var q []float64
		if err := rows.Scan(&b, &q); err != nil {
			return nil, fmt.Errorf("series latency: %w", err)
		}
		if p := at(int64(b)); p != nil && len(q) == 2 {
			p50, p99 := q[0], q[1]
			p.P50MS, p.P99MS = &p50, &p99
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("series latency: %w", err)
	}
	return out, nil
}

// stats reads the counts and percentiles of the deliveries accepted since
// a unix time.
func (h *History) stats(ctx context.Context, accountID, endpointID string, window time.Duration, since int64) (Stats, error) {
	s := Stats{Window: window.String()}
	var all, ok, finished uint64
	if err := h.conn.QueryRow(ctx, h.text(sqlStatusCounts), accountID, endpointID, since).Scan(&all, &ok, &finished); err != nil {
		return Stats{}, fmt.Errorf("status counts: %w", err)
	}
	s.Total, s.Succeeded, s.Failed, s.Retrying = int(all), int(ok), int(finished-ok), int(all-finished)
	s.SuccessRate = rate(ok, finished)
	var attempts uint64
	var q []float64
	if err := h.conn.QueryRow(ctx, h.text(sqlLatency), accountID, endpointID, since).Scan(&attempts, &q); err != nil {
		return Stats{}, fmt.Errorf("latency percentiles: %w", err)
	}
	s.Attempts = int(attempts)
	if attempts > 0 && len(q) == 3 {
		s.ResponseTime = &Percentiles{P50: q[0], P95: q[1], P99: q[2]}
	}
	return s, nil
}

// Summaries returns, for each of the account's endpointIDs that has
// deliveries, its last delivery and its success rate over deliveries
// accepted within window. Endpoints without any are absent from the map
// (both fields null).
func (h *History) Summaries(ctx context.Context, accountID string, endpointIDs []string, window time.Duration) (map[string]Summary, error) {
	out := map[string]Summary{}
	if len(endpointIDs) == 0 {
		return out, nil
	}
	if window <= 0 {
		return nil, fmt.Errorf("%w: window must be positive", ErrBadFilter)
	}
	defer h.observe("summaries", time.Now())
	ids := make([]any, len(endpointIDs))
	for i, id := range endpointIDs {
		ids[i] = id
	}
	set := clickhouse.GroupSet{Value: ids}
	rows, err := h.conn.Query(ctx, h.text(sqlLastDelivery), accountID, set)
	if err != nil {
		return nil, fmt.Errorf("last deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var last time.Time
		if err := rows.Scan(&id, &last); err != nil {
			return nil, fmt.Errorf("last deliveries: %w", err)
		}
		last = last.UTC()
		out[id] = Summary{LastDelivery: &last}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("last deliveries: %w", err)
	}
	rows.Close()
	rows, err = h.conn.Query(ctx, h.text(sqlSuccessCounts), accountID, set, time.Now().Add(-window).Unix())
	if err != nil {
		return nil, fmt.Errorf("success rates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var ok, finished uint64
		if err := rows.Scan(&id, &ok, &finished); err != nil {
			return nil, fmt.Errorf("success rates: %w", err)
		}
		s := out[id]
		s.SuccessRate = rate(ok, finished)
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("success rates: %w", err)
	}
	return out, nil
}

func rate(n, of uint64) *float64 {
	if of == 0 {
		return nil
	}
	r := float64(n) / float64(of)
	return &r
}

func statusPtr(s uint16) *int {
	if s == 0 {
		return nil
	}
	v := int(s)
	return &v
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
