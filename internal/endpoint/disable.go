package endpoint

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// DisabledEventData is the data of a webhook.endpoint.disabled event.
type DisabledEventData struct {
	EndpointID  string    `json:"endpoint_id"`
	URL         string    `json:"url"`
	Description string    `json:"description"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail"`
	DisabledAt  time.Time `json:"disabled_at"`
}

// disabledEvent is the webhook.endpoint.disabled event announcing that e
// is disabled for reason. Its id is derived from the endpoint and the
// version it had, so that the same disabling announced twice (two
// dispatchers, or a repeat after a crash) is one event for the router's
// idempotency window.
func disabledEvent(e *Entry, reason, detail string, at time.Time) (schemas.Event, error) {
	sum := sha256.Sum256([]byte(e.ID + "\n" + strconv.FormatInt(e.Version, 10)))
	data, err := json.Marshal(DisabledEventData{EndpointID: e.ID, URL: e.URL, Description: e.Description,
		Reason: reason, Detail: detail, DisabledAt: at.UTC().Truncate(time.Second)})
	if err != nil {
		return schemas.Event{}, err
	}
	return schemas.Event{
		ID:        "evt_disabled_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:26],
		Type:      schemas.EventEndpointDisabled,
		AccountID: e.AccountID,
		Created:   at.Unix(),
		Data:      data,
	}, nil
}

// Disable deactivates the endpoint id for reason (schemas.DisabledGone or
// DisabledFailing) and tells its account: first the endpoint record (so
// that whoever the event reaches finds the endpoint disabled), then the
// webhook.endpoint.disabled event on <p>.events (acks=all), retried until
// ctx ends. Only the writer whose update won announces, so the event is
// written once (its id is derived from the endpoint's version, so even a
// repeat is one event for the router). A crash between the two writes
// leaves the endpoint disabled without its event: the log line and the
// metric say so, and the endpoint's disabled_reason and disabled_at show it.
// It reports whether this call disabled it; false, nil when the endpoint is
// gone or already inactive (another instance was first).
func (s *Store) Disable(ctx context.Context, id, reason, detail string, now time.Time) (bool, error) {
	e, ok := s.Get(id)
	if !ok || !e.Active {
		return false, nil
	}
	ev, err := disabledEvent(e, reason, detail, now)
	if err != nil {
		return false, err
	}
	at := now.UTC().Truncate(time.Second)
	_, err = s.Update(ctx, e.AccountID, id, e.Version, func(ep *schemas.Endpoint) error {
		ep.Active, ep.DisabledReason, ep.DisabledAt = false, reason, &at
		return nil
	})
	switch {
	case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
		return false, nil // changed meanwhile: whoever changed it decided
	case err != nil:
		return false, fmt.Errorf("disable endpoint %s: %w", id, err)
	}
	s.disabled.WithLabelValues(reason).Inc()
	s.log.Warn("endpoint disabled", "endpoint", id, "account", e.AccountID, "reason", reason, "detail", detail, "event", ev.ID)
	msg := kafka.Message{Key: []byte(ev.AccountID), Value: schemas.EncodeEvent(&ev),
		Headers: []kafka.Header{{Key: schemas.HeaderIngest, Value: []byte("system")}}}
	var backoff retry.Backoff
	for {
		err := s.events.WriteMessages(ctx, msg)
		if err == nil {
			return true, nil
		}
		s.log.Warn("announcing a disabled endpoint failed, retrying", "endpoint", id, "event", ev.ID, "err", err)
		if !backoff.Wait(ctx) {
			s.log.Error("a disabled endpoint was not announced (webhook.endpoint.disabled not sent)", "endpoint", id, "account", e.AccountID, "event", ev.ID, "err", err)
			return true, nil
		}
	}
}
