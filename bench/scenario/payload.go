// Package scenario holds the bench's scenarios. Each is a suite.Scenario
// built from its own Config; scenarios share the payload generator so the
// ceiling, ingest and e2e runs move the same bytes.
package scenario

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/zaits/webhooks/schemas"
)

// EventType is the catalogue type of every bench event.
const EventType = "document.signed"

// appendData appends the data object of bench event seq: the seed's example
// document.signed data plus "seq", the per-endpoint sequence number the
// receiver checks order and losses with (about 220 bytes).
func appendData(b []byte, seq int64) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"document_id":"doc_`...)
	b = strconv.AppendInt(b, seq, 36)
	b = append(b, `","signer":{"email":"john@example.com","name":"John Doe"},"signed_at":"2024-01-15T14:30:00Z","ip_address":"192.168.1.1"}`...)
	return b
}

// AppendPayload appends the seed payload (the body the dispatcher POSTs) of
// bench event id with sequence seq, in schemas.Payload's field order.
func AppendPayload(b []byte, id string, created, seq int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","type":"`+EventType+`","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"data":`...)
	b = appendData(b, seq)
	return append(b, '}')
}

// NewEvent returns bench event id for account with sequence seq, as a
// producer publishes it (schemas.Event).
func NewEvent(id, account string, seq int64) schemas.Event {
	return schemas.Event{ID: id, Type: EventType, AccountID: account, Created: time.Now().Unix(), Data: appendData(nil, seq)}
}

// AppendEventID appends "evt_<run>_<endpoint>_<seq>".
func AppendEventID(b []byte, run string, endpoint int, seq int64) []byte {
	b = append(b, "evt_"...)
	b = append(b, run...)
	b = append(b, '_')
	b = strconv.AppendInt(b, int64(endpoint), 10)
	b = append(b, '_')
	return strconv.AppendInt(b, seq, 10)
}

// NewSecret returns a fresh "whsec_<base64 of 24 random bytes>" secret.
func NewSecret() string {
	k := make([]byte, 24)
	_, _ = rand.Read(k)
	return "whsec_" + base64.StdEncoding.EncodeToString(k)
}

// RunID returns a short random id that keeps event ids of runs apart.
func RunID() string {
	k := make([]byte, 6)
	_, _ = rand.Read(k)
	return base64.RawURLEncoding.EncodeToString(k)
}
