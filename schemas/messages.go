package schemas

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Event is a producer's event: the body of POST /v1/events (one item of
// POST /v1/events/batch) and the value of a <p>.events message, whose key
// is AccountID. The JSON Schema is events.schema.json.
type Event struct {
	// ID is the producer's idempotency key; "evt_…" is generated when empty.
	ID string `json:"id,omitempty"`
	// Type is a catalogue event type.
	Type string `json:"type"`
	// AccountID owns the event; only that account's endpoints receive it.
	AccountID string `json:"account_id"`
	// Created is unix seconds; the time of acceptance when zero.
	Created int64 `json:"created,omitempty"`
	// Data is the event's JSON object (at most MaxEventDataBytes).
	Data json.RawMessage `json:"data"`
}

// MaxEventDataBytes bounds Event.Data.
const MaxEventDataBytes = 256 << 10

// Payload is the body POSTed to an endpoint, in the seed's format.
// The router encodes it once; the dispatcher sends those exact bytes.
type Payload struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Created int64           `json:"created"`
	Data    json.RawMessage `json:"data"`
}

// DeliveryID is the deterministic id of the delivery of eventID to
// endpointID: "del_" + 26 base32 characters of SHA-256(eventID "\n" endpointID).
// A repeated attempt, even after a crash, carries the same id.
func DeliveryID(eventID, endpointID string) string {
	sum := sha256.Sum256([]byte(eventID + "\n" + endpointID))
	return "del_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:26]
}

// Task is one delivery of one event to one endpoint: a message on
// <p>.deliveries, a delay topic (<p>.retry.*) or <p>.dead, keyed by
// EndpointID. On the wire the value is exactly Body (the bytes to POST) and
// every other field is a Kafka header named "zaits-<field>", so the
// dispatcher sends the value without decoding or copying it.
type Task struct {
	DeliveryID string
	EventID    string
	EventType  string
	AccountID  string
	EndpointID string
	// Attempt is the 1-based number of the attempt this task asks for.
	Attempt int
	// AcceptedAt is when the event was accepted (for latency measurement).
	AcceptedAt time.Time
	// DueAt is when a delayed task may be attempted; zero on <p>.deliveries.
	DueAt time.Time
	// Body is the exact request body (a Payload, encoded once by the router).
	Body []byte
	// AttemptBase is how many attempts the delivery had before this run of
	// the retry schedule: 0 for a live delivery; a resend, recover, replay or
	// redrive starts a new run after the attempts already recorded. The
	// history numbers the attempt AttemptBase + Attempt (HistoryAttempt).
	AttemptBase int
	// Trigger is why this run exists: "" for a live delivery, else one of
	// the Trigger* constants.
	Trigger string
	// EventPartition and EventOffset are where the event is on <p>.events,
	// from which a delivery is resent or replayed; -1 when unknown.
	EventPartition int
	EventOffset    int64
	// EndpointsAt is the position of <p>.endpoints the router's endpoint
	// view had applied when it made the task (per partition, index =
	// partition, the offset after the last record read); the dispatcher's
	// view reaches it before reading the endpoint, so an attempt never acts
	// on an older configuration than the routing did. Empty: no such
	// position (tasks from older routers).
	EndpointsAt []int64
}

// HistoryAttempt is the attempt's number in the delivery's history.
func (t *Task) HistoryAttempt() int { return t.AttemptBase + t.Attempt }

// Triggers of a run of deliveries other than the live one (Task.Trigger,
// Attempt.Trigger).
const (
	TriggerResend  = "resend"  // POST …/deliveries/{id}/resend
	TriggerRecover = "recover" // a recover job: failed deliveries re-sent
	TriggerReplay  = "replay"  // a replay job: the event log re-delivered
	TriggerRedrive = "redrive" // a redrive job: dead letters re-delivered
)

// Task header names.
const (
	HeaderDeliveryID    = "zaits-delivery-id"
	HeaderEventID       = "zaits-event-id"
	HeaderEventType     = "zaits-event-type"
	HeaderAccountID     = "zaits-account-id"
	HeaderEndpointID    = "zaits-endpoint-id"
	HeaderAttempt       = "zaits-attempt"
	HeaderAcceptedAt    = "zaits-accepted-at" // unix milliseconds
	HeaderDueAt         = "zaits-due-at"      // unix milliseconds
	HeaderAttemptBase   = "zaits-attempt-base"
	HeaderTrigger       = "zaits-trigger"
	HeaderEventPosition = "zaits-event-position" // "<partition>:<offset>" on <p>.events
	// HeaderRevision is a unique id of one write to <p>.endpoints (also on
	// tombstones), by which a writer recognises its own record.
	HeaderRevision = "zaits-revision"
	// HeaderIfVersion on a tombstone of <p>.endpoints makes the delete
	// conditional: it applies only while the endpoint has that version
	// (DELETE with If-Match).
	HeaderIfVersion = "zaits-if-version"
	// HeaderInvalidReason carries why a message was quarantined on <p>.events.invalid.
	HeaderInvalidReason = "zaits-invalid-reason"
	// HeaderEndpointsAt carries Task.EndpointsAt: the offsets of the
	// partitions of <p>.endpoints, comma-separated in partition order ("12,7").
	HeaderEndpointsAt = "zaits-endpoints-at"
)

// Message encodes t as a Kafka message for topic (a full name).
func (t *Task) Message(topic string) kafka.Message {
	h := make([]kafka.Header, 0, 9) // room for the optional ones (the router appends HeaderEndpointsAt)
	h = append(h,
		kafka.Header{Key: HeaderDeliveryID, Value: []byte(t.DeliveryID)},
		kafka.Header{Key: HeaderEventID, Value: []byte(t.EventID)},
		kafka.Header{Key: HeaderEventType, Value: []byte(t.EventType)},
		kafka.Header{Key: HeaderAccountID, Value: []byte(t.AccountID)},
		kafka.Header{Key: HeaderEndpointID, Value: []byte(t.EndpointID)},
		kafka.Header{Key: HeaderAttempt, Value: strconv.AppendInt(nil, int64(t.Attempt), 10)},
		kafka.Header{Key: HeaderAcceptedAt, Value: strconv.AppendInt(nil, t.AcceptedAt.UnixMilli(), 10)},
	)
	if !t.DueAt.IsZero() {
		h = append(h, kafka.Header{Key: HeaderDueAt, Value: strconv.AppendInt(nil, t.DueAt.UnixMilli(), 10)})
	}
	if t.AttemptBase > 0 {
		h = append(h, kafka.Header{Key: HeaderAttemptBase, Value: strconv.AppendInt(nil, int64(t.AttemptBase), 10)})
	}
	if t.Trigger != "" {
		h = append(h, kafka.Header{Key: HeaderTrigger, Value: []byte(t.Trigger)})
	}
	if t.EventOffset >= 0 {
		pos := strconv.AppendInt(nil, int64(t.EventPartition), 10)
		pos = append(pos, ':')
		h = append(h, kafka.Header{Key: HeaderEventPosition, Value: strconv.AppendInt(pos, t.EventOffset, 10)})
	}
	if len(t.EndpointsAt) > 0 {
		h = append(h, kafka.Header{Key: HeaderEndpointsAt, Value: AppendOffsets(nil, t.EndpointsAt)})
	}
	return kafka.Message{Topic: topic, Key: []byte(t.EndpointID), Value: t.Body, Headers: h}
}

// ErrBadTask is wrapped by ParseTask for a message that is not a task.
var ErrBadTask = errors.New("not a delivery task")

// ParseTask decodes a task message. Body aliases m.Value.
func ParseTask(m kafka.Message) (Task, error) {
	t := Task{Body: m.Value, EventPartition: -1, EventOffset: -1}
	for _, h := range m.Headers {
		v := string(h.Value)
		var err error
		switch h.Key {
		case HeaderDeliveryID:
			t.DeliveryID = v
		case HeaderEventID:
			t.EventID = v
		case HeaderEventType:
			t.EventType = v
		case HeaderAccountID:
			t.AccountID = v
		case HeaderEndpointID:
			t.EndpointID = v
		case HeaderAttempt:
			t.Attempt, err = strconv.Atoi(v)
		case HeaderAcceptedAt:
			t.AcceptedAt, err = parseMillis(v)
		case HeaderDueAt:
			t.DueAt, err = parseMillis(v)
		case HeaderAttemptBase:
			t.AttemptBase, err = strconv.Atoi(v)
		case HeaderTrigger:
			t.Trigger = v
		case HeaderEventPosition:
			t.EventPartition, t.EventOffset, err = parsePosition(v)
		case HeaderEndpointsAt:
			t.EndpointsAt, err = ParseOffsets(v)
		}
		if err != nil {
			return Task{}, fmt.Errorf("%w: header %s=%q: %v", ErrBadTask, h.Key, v, err)
		}
	}
	if t.DeliveryID == "" || t.EndpointID == "" || t.Attempt < 1 || t.AttemptBase < 0 {
		return Task{}, fmt.Errorf("%w: delivery id, endpoint id and attempt are required", ErrBadTask)
	}
	return t, nil
}

// parsePosition reads "<partition>:<offset>".
func parsePosition(v string) (int, int64, error) {
	ps, os, ok := strings.Cut(v, ":")
	if !ok {
		return -1, -1, errors.New("not <partition>:<offset>")
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 {
		return -1, -1, errors.New("bad partition")
	}
	o, err := strconv.ParseInt(os, 10, 64)
	if err != nil || o < 0 {
		return -1, -1, errors.New("bad offset")
	}
	return p, o, nil
}

// AppendOffsets appends offs to dst as HeaderEndpointsAt encodes them.
func AppendOffsets(dst []byte, offs []int64) []byte {
	for i, o := range offs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, o, 10)
	}
	return dst
}

// ParseOffsets decodes a HeaderEndpointsAt value; every offset is >= 0.
func ParseOffsets(v string) ([]int64, error) {
	parts := strings.Split(v, ",")
	out := make([]int64, len(parts))
	for i, p := range parts {
		o, err := strconv.ParseInt(p, 10, 64)
		if err != nil || o < 0 {
			return nil, fmt.Errorf("offset %d of %q is not a non-negative integer", i, v)
		}
		out[i] = o
	}
	return out, nil
}

func parseMillis(v string) (time.Time, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// Attempt outcomes.
const (
	OutcomeSuccess  = "success"  // 2xx
	OutcomeRetrying = "retrying" // failed, another attempt is scheduled
	OutcomeFailed   = "failed"   // failed, no further attempt
)

// Attempt error codes (Attempt.ErrorCode): stable, for filtering and metrics.
const (
	ErrCodeHTTPStatus       = "http_status"       // a non-2xx response
	ErrCodeTimeout          = "timeout"           // no complete response within 10 s
	ErrCodeConnection       = "connection_error"  // DNS, refused, reset
	ErrCodeTLS              = "tls_error"         // handshake or certificate
	ErrCodeAddressRefused   = "address_refused"   // the dial-time address guard said no
	ErrCodeEndpointDeleted  = "endpoint_deleted"  // the endpoint was gone at attempt time
	ErrCodeEndpointInactive = "endpoint_inactive" // the endpoint was deactivated at attempt time
)

// Attempt records one delivery attempt: the JSON value of a <p>.attempts
// message, keyed by EndpointID. Analytics writes them to ClickHouse.
type Attempt struct {
	DeliveryID string `json:"delivery_id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	AccountID  string `json:"account_id"`
	EndpointID string `json:"endpoint_id"`
	// Attempt is 1-based.
	Attempt int `json:"attempt"`
	// Outcome is OutcomeSuccess, OutcomeRetrying or OutcomeFailed.
	Outcome string `json:"outcome"`
	// HTTPStatus is the response status; 0 when there was no response.
	HTTPStatus int `json:"http_status"`
	// LatencyMS is the attempt's request duration in milliseconds.
	LatencyMS int64 `json:"latency_ms"`
	// ErrorCode is one of the ErrCode* constants; empty on success.
	ErrorCode string `json:"error_code,omitempty"`
	// Error is a message for a person; empty on success.
	Error string `json:"error,omitempty"`
	// ResponseExcerpt is the start of the response body, truncated.
	ResponseExcerpt string `json:"response_excerpt,omitempty"`
	// EventCreated is the event's created time, unix seconds.
	EventCreated int64 `json:"event_created"`
	// AcceptedAt is when the event was accepted.
	AcceptedAt time.Time `json:"accepted_at"`
	// AttemptedAt is when this attempt started.
	AttemptedAt time.Time `json:"attempted_at"`
	// NextRetryAt is when the next attempt is due (outcome retrying only).
	NextRetryAt *time.Time `json:"next_retry_at,omitempty"`
	// Test marks an attempt made by POST /v1/webhooks/endpoints/{id}/test.
	Test bool `json:"test,omitempty"`
	// Trigger is the task's: "" for a live delivery, else a Trigger* constant.
	Trigger string `json:"trigger,omitempty"`
	// EventPartition and EventOffset are the event's position on
	// <p>.events; -1 when unknown (test sends, records written before
	// positions were kept: readers must preset -1 before decoding).
	EventPartition int   `json:"event_partition"`
	EventOffset    int64 `json:"event_offset"`
}

// Ordering modes of an endpoint.
const (
	OrderingDefault = "default" // first attempts in order; retries may overtake
	OrderingStrict  = "strict"  // later tasks wait behind a failing one
)

// Endpoint is the stored configuration of one webhook endpoint: the JSON
// value of a <p>.endpoints message keyed by ID (a tombstone deletes it).
// Version starts at 1 and grows by one with every accepted change; see
// internal/endpoint for how concurrent writers are ordered.
type Endpoint struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"account_id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	Active      bool      `json:"active"`
	Ordering    string    `json:"ordering"`
	Secrets     []Secret  `json:"secrets"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// DisabledReason is why the system deactivated the endpoint (one of the
	// Disabled* constants); empty when active or deactivated by the account.
	DisabledReason string `json:"disabled_reason,omitempty"`
	// DisabledAt is when the system deactivated it.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	// ActivatedAt is when the endpoint last became active (created active,
	// or re-activated); nil means CreatedAt. The check that disables an
	// endpoint failing for days counts from it, so a re-enabled endpoint
	// gets the whole period again.
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
}

// Reasons the system disables an endpoint (Endpoint.DisabledReason).
const (
	DisabledGone    = "gone"    // it answered 410 Gone
	DisabledFailing = "failing" // every attempt failed for the configured period
)

// Secret is one signing secret of an endpoint, encrypted at rest.
type Secret struct {
	// Ciphertext is base64(nonce || AES-256-GCM(secret)), bound to the endpoint id.
	Ciphertext string `json:"ciphertext"`
	// ExpiresAt is set on a secret replaced by a rotation: it keeps signing until then.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}
