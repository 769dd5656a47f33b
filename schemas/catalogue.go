package schemas

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// EventType is one entry of the event catalogue (GET /v1/webhooks/events).
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
}

//go:embed events.json
var catalogueJSON []byte

// Catalogue is the list of event types customers can subscribe to, in the
// seed's order. It is the content of events.json, the single source.
var Catalogue = mustCatalogue()

// TestEventType is the type of the sample event sent by the test endpoint.
const TestEventType = "test"

// EventEndpointDisabled is the system's own event: an endpoint of the
// account was disabled (it answered 410 Gone, or failed for days).
const EventEndpointDisabled = "webhook.endpoint.disabled"

func mustCatalogue() []EventType {
	var v struct {
		Events []EventType `json:"events"`
	}
	if err := json.Unmarshal(catalogueJSON, &v); err != nil {
		panic("schemas/events.json: " + err.Error())
	}
	return v.Events
}

var catalogueSet = func() map[string]bool {
	m := map[string]bool{}
	for _, e := range Catalogue {
		m[e.Name] = true
	}
	return m
}()

// IsEventType reports whether name is a catalogue event type.
func IsEventType(name string) bool { return catalogueSet[name] }

// IsSubscription reports whether s is a valid subscription: a catalogue type,
// "*" (every type), or a wildcard "<prefix>.*" whose prefix is a dotted
// prefix of at least one catalogue type ("document.*", "face.*", "ocr.id.*").
func IsSubscription(s string) bool {
	if s == "*" || IsEventType(s) {
		return true
	}
	prefix, ok := strings.CutSuffix(s, ".*")
	if !ok || prefix == "" || strings.Contains(prefix, "*") {
		return false
	}
	for _, e := range Catalogue {
		if strings.HasPrefix(e.Name, prefix+".") {
			return true
		}
	}
	return false
}

// Matches reports whether subscription sub (see IsSubscription) covers eventType.
func Matches(sub, eventType string) bool {
	if sub == "*" || sub == eventType {
		return true
	}
	prefix, ok := strings.CutSuffix(sub, ".*")
	return ok && strings.HasPrefix(eventType, prefix+".")
}
