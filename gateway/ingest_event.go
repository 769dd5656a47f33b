package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-json"

	"github.com/zaits/webhooks/schemas"
)

// The rules of one event, shared by the HTTP path and the router (which
// checks what producers wrote straight to <p>.events). The JSON Schema in
// schemas/events.schema.json states the same rules.
const (
	maxIDLen = 128 // id and account_id
	// maxCreated is 9999-12-31T23:59:59Z in unix seconds.
	maxCreated = 253402300799
)

// eventFields are the fields an event may have; anything else is rejected
// so that a misspelt field is reported instead of silently ignored.
var eventFields = map[string]bool{"id": true, "type": true, "account_id": true, "created": true, "data": true}

// parseEvent decodes and validates one event object and reports every
// problem at once. An absent account_id becomes defaultAccount (an account
// API key's own account; empty for service tokens and Kafka producers). An
// absent id stays empty and an absent created stays 0: the caller fills
// them (see newEventID, kafkaEventID).
func parseEvent(b []byte, defaultAccount string) (schemas.Event, []FieldIssue) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return schemas.Event{}, []FieldIssue{{Field: "", Issue: "must be a JSON object"}}
	}
	var ev schemas.Event
	var issues []FieldIssue
	bad := func(field, format string, args ...any) {
		issues = append(issues, FieldIssue{Field: field, Issue: fmt.Sprintf(format, args...)})
	}
	for k := range raw {
		if !eventFields[k] {
			bad(k, "unknown field (allowed: id, type, account_id, created, data)")
		}
	}
	if v, ok := raw["id"]; ok && !isNull(v) {
		if s, ok := jsonString(v); !ok {
			bad("id", "must be a string")
		} else if msg := checkIdent(s); msg != "" {
			bad("id", "%s", msg)
		} else {
			ev.ID = s
		}
	}
	if v, ok := raw["type"]; !ok || isNull(v) {
		bad("type", "is required")
	} else if s, ok := jsonString(v); !ok {
		bad("type", "must be a string")
	} else if !schemas.IsEventType(s) {
		bad("type", "%q is not a catalogue event type (GET /v1/webhooks/events lists them)", truncate(s, 64))
	} else {
		ev.Type = s
	}
	if v, ok := raw["account_id"]; !ok || isNull(v) {
		if defaultAccount == "" {
			bad("account_id", "is required")
		}
		ev.AccountID = defaultAccount
	} else if s, ok := jsonString(v); !ok {
		bad("account_id", "must be a string")
	} else if msg := checkIdent(s); msg != "" {
		bad("account_id", "%s", msg)
	} else {
		ev.AccountID = s
	}
	if v, ok := raw["created"]; ok && !isNull(v) {
		n, err := strconv.ParseInt(string(v), 10, 64)
		switch {
		case err != nil:
			bad("created", "must be an integer number of unix seconds")
		case n < 1 || n > maxCreated:
			bad("created", "must be between 1 and %d (unix seconds)", maxCreated)
		default:
			ev.Created = n
		}
	}
	if v, ok := raw["data"]; !ok || isNull(v) {
		bad("data", "is required (a JSON object)")
	} else if len(v) == 0 || v[0] != '{' {
		bad("data", "must be a JSON object")
	} else if len(v) > schemas.MaxEventDataBytes {
		bad("data", "is %d bytes; at most %d are allowed", len(v), schemas.MaxEventDataBytes)
	} else {
		ev.Data = v
	}
	return ev, issues
}

func isNull(v json.RawMessage) bool { return bytes.Equal(v, []byte("null")) }

// jsonString decodes v if it is a JSON string.
func jsonString(v json.RawMessage) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// checkIdent checks an id or account id: 1–128 characters from
// A–Z a–z 0–9 and "_-.:". They travel in Kafka keys and HTTP headers, so
// nothing that needs escaping is allowed.
func checkIdent(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > maxIDLen {
		return fmt.Sprintf("is %d characters; at most %d are allowed", len(s), maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return "may contain only letters, digits and _ - . :"
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// issuesText joins issues into one line for messages and Kafka headers.
func issuesText(issues []FieldIssue) string {
	parts := make([]string, len(issues))
	for i, is := range issues {
		if is.Field == "" {
			parts[i] = is.Issue
		} else {
			parts[i] = is.Field + ": " + is.Issue
		}
	}
	return strings.Join(parts, "; ")
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newEventID is the id of an HTTP event sent without one: "evt_" and 26
// random base32 characters (130 bits).
func newEventID() string { return "evt_" + strings.ToLower(rand.Text()) }

// kafkaEventID is the id of an event written to Kafka without one, derived
// from its position, so that the router re-reading the message after a
// crash derives the same id and therefore the same delivery ids.
func kafkaEventID(topic string, partition int, offset int64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", topic, partition, offset))
	return "evt_" + strings.ToLower(idEncoding.EncodeToString(sum[:]))[:26]
}

// payload encodes the body every endpoint receives for ev, once.
func payload(ev *schemas.Event) ([]byte, error) {
	return json.Marshal(schemas.Payload{ID: ev.ID, Type: ev.Type, Created: ev.Created, Data: ev.Data})
}
