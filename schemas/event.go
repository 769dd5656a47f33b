package schemas

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"

	"unicode/utf8"

	"github.com/goccy/go-json"
)

// The codec of events: the rules of one event, shared by the gateway's HTTP
// path and the router (which checks what producers wrote straight to
// <p>.events), and the encodings of the <p>.events value and of the body
// endpoints receive. events.schema.json states the same rules.
const (
	maxIDLen = 128 // id and account_id
	// maxCreated is 9999-12-31T23:59:59Z in unix seconds.
	maxCreated = 253402300799
	// MaxBatchEvents bounds the events of one POST /v1/events/batch.
	MaxBatchEvents = 1000
)

// HeaderIngest marks the <p>.events messages the gateway's HTTP API wrote,
// so that the router counts only the others as accepted on the Kafka path.
const HeaderIngest = "zaits-ingest"

// FieldIssue names one invalid field of a request or an event.
type FieldIssue struct {
	Field string `json:"field"`
	Issue string `json:"issue"`
}

// EventFields are the fields an event may have; anything else is rejected
// so that a misspelt field is reported instead of silently ignored.
var EventFields = map[string]bool{"id": true, "type": true, "account_id": true, "created": true, "data": true}

// ParseEvent decodes and validates one event object and reports every
// problem at once. An absent account_id becomes defaultAccount (an account
// API key's own account; empty for service tokens and Kafka producers). An
// absent id stays empty and an absent created stays 0: the caller fills
// them (see NewEventID, KafkaEventID).
//
// The event must be strict JSON (CheckJSON, MaxJSONDepth counted from the
// event's object): invalid UTF-8, an unpaired surrogate escape or a
// duplicate key anywhere, data included, is an issue of the field it is in.
func ParseEvent(b []byte, defaultAccount string) (Event, []FieldIssue) {
	if ev, ok := parseEventFast(b, defaultAccount); ok {
		return ev, nil
	}
	return parseEventFull(b, defaultAccount)
}

// parseEventFull is parseEvent by full decoding: it finds every problem.
func parseEventFull(b []byte, defaultAccount string) (Event, []FieldIssue) {
	var issues []FieldIssue
	if jerr := CheckJSON(b, MaxJSONDepth); jerr != nil && !jerr.Syntax && jerr.Path != "" {
		issues = append(issues, FieldIssue{Field: jerr.Path, Issue: jerr.Issue})
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		if len(issues) > 0 && !strings.HasPrefix(issues[0].Field, "[") {
			return Event{}, issues // an object too deep for the decoder
		}
		return Event{}, []FieldIssue{{Field: "", Issue: "must be a JSON object"}}
	}
	var ev Event
	bad := func(field, format string, args ...any) {
		issues = append(issues, FieldIssue{Field: field, Issue: fmt.Sprintf(format, args...)})
	}
	for k := range raw {
		if !EventFields[k] {
			bad(k, "unknown field (allowed: id, type, account_id, created, data)")
		}
	}
	if v, ok := raw["id"]; ok && !isNull(v) {
		if s, ok := jsonString(v); !ok {
			bad("id", "must be a string")
		} else if msg := CheckIdent(s); msg != "" {
			bad("id", "%s", msg)
		} else {
			ev.ID = s
		}
	}
	if v, ok := raw["type"]; !ok || isNull(v) {
		bad("type", "is required")
	} else if s, ok := jsonString(v); !ok {
		bad("type", "must be a string")
	} else if !IsEventType(s) {
		bad("type", "%q is not a catalogue event type (GET /v1/webhooks/events lists them)", Clip(s, 64))
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
	} else if msg := CheckIdent(s); msg != "" {
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
	} else if len(v) > MaxEventDataBytes {
		bad("data", "is %d bytes; at most %d are allowed", len(v), MaxEventDataBytes)
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

// ReasonLabel is the metric label of a validation failure: the first
// invalid field of EventFields (the top-level one of a path such as
// "data.a"), "unknown_field", or "json" when the value is not an object.
func ReasonLabel(issues []FieldIssue) string {
	f := issues[0].Field
	if i := strings.IndexAny(f, ".["); i >= 0 {
		f = f[:i]
	}
	switch {
	case f == "":
		return "json"
	case EventFields[f]:
		return f
	}
	return "unknown_field"
}

// CheckIdent checks an id or account id: 1–128 characters from
// A–Z a–z 0–9 and "_-.:". They travel in Kafka keys and HTTP headers, so
// nothing that needs escaping is allowed.
func CheckIdent(s string) string {
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

// Clip shortens s to at most n bytes, cut at a character boundary, and
// marks the cut with "…" (for quoting user input in messages).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// IssuesText joins issues into one line for messages and Kafka headers.
func IssuesText(issues []FieldIssue) string {
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

// NewEventID is the id of an HTTP event sent without one: "evt_" and 26
// random base32 characters (130 bits).
func NewEventID() string { return "evt_" + strings.ToLower(rand.Text()) }

// KafkaEventID is the id of an event written to Kafka without one, derived
// from its position, so that the router re-reading the message after a
// crash derives the same id and therefore the same delivery ids.
func KafkaEventID(topic string, partition int, offset int64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", topic, partition, offset))
	return "evt_" + strings.ToLower(idEncoding.EncodeToString(sum[:]))[:26]
}

// EncodePayload encodes the body every endpoint receives for ev, once: a
// Payload, {"id","type","created","data"}. The same event always gives the
// same bytes, so a task repeated after a crash is identical.
func EncodePayload(ev *Event) []byte {
	b := make([]byte, 0, len(ev.ID)+len(ev.Type)+len(ev.Data)+64)
	b = append(b, `{"id":"`...)
	b = append(b, ev.ID...) // ids and types need no escaping (CheckIdent, the catalogue)
	b = append(b, `","type":"`...)
	b = append(b, ev.Type...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, ev.Created, 10)
	b = append(b, `,"data":`...)
	b = append(b, ev.Data...)
	return append(b, '}')
}

// EncodeEvent encodes a valid event as the value of a <p>.events message
// (what json.Marshal(ev) gives, without its cost).
func EncodeEvent(ev *Event) []byte {
	b := make([]byte, 0, len(ev.ID)+len(ev.Type)+len(ev.AccountID)+len(ev.Data)+80)
	b = append(b, `{"id":"`...)
	b = append(b, ev.ID...)
	b = append(b, `","type":"`...)
	b = append(b, ev.Type...)
	b = append(b, `","account_id":"`...)
	b = append(b, ev.AccountID...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, ev.Created, 10)
	b = append(b, `,"data":`...)
	b = append(b, ev.Data...)
	return append(b, '}')
}

// parseEventFast is ParseEvent for the common case, without building a
// map, in one pass: b is one flat object whose keys are known fields,
// unescaped and not repeated, and whose values are all valid — ids and
// types of plain ASCII, created an integer without leading zeros, data
// strict JSON (CheckJSON) within the depth. Such a b is strict JSON. For
// anything else it returns false and parseEventFull reports the problems,
// so both give the same result for every input.
func parseEventFast(b []byte, defaultAccount string) (Event, bool) {
	var ev Event
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ev, false
	}
	i = skipWS(b, i+1)
	var seen [5]bool
	hasType, hasData := false, false
	for {
		if i >= len(b) || b[i] != '"' {
			return ev, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		if j >= len(b) || b[j] != '"' {
			return ev, false
		}
		key := b[i+1 : j]
		i = skipWS(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return ev, false
		}
		i = skipWS(b, i+1)
		end := skipValue(b, i)
		if end < 0 {
			return ev, false
		}
		v := b[i:end]
		null := string(v) == "null"
		var k int
		switch string(key) {
		case "id":
			k = 0
			if !null {
				s, ok := plain(v)
				if !ok || CheckIdent(s) != "" {
					return ev, false
				}
				ev.ID = s
			}
		case "type":
			k = 1
			s, ok := plain(v)
			if !ok || !IsEventType(s) {
				return ev, false
			}
			ev.Type, hasType = s, true
		case "account_id":
			k = 2
			if !null {
				s, ok := plain(v)
				if !ok || CheckIdent(s) != "" {
					return ev, false
				}
				ev.AccountID = s
			}
		case "created":
			k = 3
			if !null {
				if len(v) == 0 || v[0] < '1' || v[0] > '9' { // JSON has no leading zeros
					return ev, false
				}
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil || n < 1 || n > maxCreated {
					return ev, false
				}
				ev.Created = n
			}
		case "data":
			k = 4
			if len(v) == 0 || v[0] != '{' || len(v) > MaxEventDataBytes || CheckJSON(v, MaxJSONDepth-1) != nil {
				return ev, false
			}
			ev.Data, hasData = v, true
		default:
			return ev, false
		}
		if seen[k] {
			return ev, false
		}
		seen[k] = true
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' && skipWS(b, i+1) == len(b) {
			break
		}
		return ev, false
	}
	if ev.AccountID == "" {
		ev.AccountID = defaultAccount
	}
	return ev, hasType && hasData && ev.AccountID != ""
}

// plain returns the content of a JSON string without escapes.
func plain(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i] (b is
// valid JSON), or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// skipString returns the end of the JSON string starting at b[i], or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// SplitBatch returns the raw events of a batch body in the common case,
// without decoding them: b is valid JSON of exactly {"events":[...]} with 1
// to MaxBatchEvents elements. Anything else returns false and the caller's
// full decoding answers.
func SplitBatch(b []byte) ([]json.RawMessage, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	i := skipWS(b, 0)
	const head = `"events"`
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipWS(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte(head)) {
		return nil, false
	}
	i = skipWS(b, i+len(head))
	if i >= len(b) || b[i] != ':' {
		return nil, false
	}
	i = skipWS(b, i+1)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i = skipWS(b, i+1)
	items := make([]json.RawMessage, 0, 64)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		if end < 0 || len(items) == MaxBatchEvents {
			return nil, false
		}
		items = append(items, b[i:end])
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	if i >= len(b) || len(items) == 0 {
		return nil, false
	}
	i = skipWS(b, i+1)
	if i >= len(b) || b[i] != '}' || skipWS(b, i+1) != len(b) {
		return nil, false
	}
	return items, true
}
