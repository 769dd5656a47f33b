package gateway

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-json"

	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// Endpoint delivery options: headers, filter and rate_limit. All three are
// optional. In a create, absent or null means none. In an update, absent
// leaves the option as it is, and null (or {} for headers and filter)
// removes it; a given value replaces the whole option (the headers object
// is replaced, not merged).
//
// Header values are write-only, like the signing secret: they are stored
// encrypted, and every answer (create, update, get, list) shows them masked
// (maskValue); the deliveries carry them in full.

// optionFields are the body fields of the options.
var optionFields = []string{"headers", "filter", "rate_limit"}

// endpointOptions are the decoded options of a create or update body.
type endpointOptions struct {
	Headers      []endpoint.Header // in name order
	HeadersSet   bool              // given (an empty list: remove them)
	Filter       json.RawMessage   // compact JSON; nil: none
	FilterSet    bool
	RateLimit    int // 0: none
	RateLimitSet bool
}

// decodeOptions decodes and validates the options present in obj.
func decodeOptions(obj map[string]json.RawMessage, out *endpointOptions, issues *[]schemas.FieldIssue) {
	if raw, ok := obj["headers"]; ok {
		out.HeadersSet = true
		if !nullValue(raw) {
			out.Headers = decodeHeaders(raw, issues)
		}
	}
	if raw, ok := obj["filter"]; ok {
		out.FilterSet = true
		if !nullValue(raw) {
			out.Filter = decodeFilter(raw, issues)
		}
	}
	if raw, ok := obj["rate_limit"]; ok {
		out.RateLimitSet = true
		if !nullValue(raw) {
			var n int
			if err := json.Unmarshal(raw, &n); err != nil || n < 1 || n > schemas.MaxRateLimit {
				*issues = append(*issues, schemas.FieldIssue{Field: "rate_limit", Issue: fmt.Sprintf("must be a whole number of deliveries per second from 1 to %d (null: no limit)", schemas.MaxRateLimit)})
			} else {
				out.RateLimit = n
			}
		}
	}
}

func decodeHeaders(raw json.RawMessage, issues *[]schemas.FieldIssue) []endpoint.Header {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		*issues = append(*issues, schemas.FieldIssue{Field: "headers", Issue: `must be an object of header names and string values, e.g. {"Authorization": "Bearer …"}`})
		return nil
	}
	if len(m) > schemas.MaxEndpointHeaders {
		*issues = append(*issues, schemas.FieldIssue{Field: "headers", Issue: fmt.Sprintf("must have at most %d headers, got %d", schemas.MaxEndpointHeaders, len(m))})
		return nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]string{}
	out := make([]endpoint.Header, 0, len(m))
	for _, name := range names {
		f := "headers." + schemas.Clip(name, 64)
		issue := func(s string) { *issues = append(*issues, schemas.FieldIssue{Field: f, Issue: s}) }
		lower := strings.ToLower(name)
		switch {
		case len(name) > schemas.MaxHeaderNameBytes:
			issue(fmt.Sprintf("a header name has at most %d characters", schemas.MaxHeaderNameBytes))
			continue
		case !schemas.HeaderToken(name):
			issue("is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")
			continue
		case schemas.ReservedHeader(name):
			issue("is set by Zaits itself and cannot be configured (Content-Type, Content-Length, Content-Encoding, Host, User-Agent, X-Zaits-*, webhook-* and hop-by-hop headers)")
			continue
		case seen[lower] != "":
			issue(fmt.Sprintf("repeats header %q (header names are case-insensitive)", seen[lower]))
			continue
		}
		seen[lower] = name
		var v string
		if err := json.Unmarshal(m[name], &v); err != nil || nullValue(m[name]) {
			issue("must be a string")
			continue
		}
		if issueText := checkHeaderValue(v); issueText != "" {
			issue(issueText)
			continue
		}
		out = append(out, endpoint.Header{Name: name, Value: v})
	}
	return out
}

// checkHeaderValue returns why v is not an acceptable header value, or "".
func checkHeaderValue(v string) string {
	if len(v) > schemas.MaxHeaderValueBytes {
		return fmt.Sprintf("must be at most %d bytes, got %d", schemas.MaxHeaderValueBytes, len(v))
	}
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	for _, r := range v {
		if (r < ' ' && r != '\t') || r == 0x7f {
			return "must not contain CR, LF or other control characters"
		}
	}
	return ""
}

func decodeFilter(raw json.RawMessage, issues *[]schemas.FieldIssue) json.RawMessage {
	f, err := schemas.CompileFilter(raw)
	if err != nil {
		var fe *schemas.FilterError
		field, issue := "filter", err.Error()
		if errors.As(err, &fe) {
			issue = fe.Issue
			if fe.Path != "" {
				field = "filter." + schemas.Clip(fe.Path, 200)
			}
		}
		*issues = append(*issues, schemas.FieldIssue{Field: field, Issue: issue})
		return nil
	}
	if string(f.JSON()) == "{}" {
		return nil // matches everything: no filter
	}
	return append(json.RawMessage(nil), f.JSON()...)
}

// applyTo sets the given filter and rate limit on ep; the headers are
// sealed by the store (they need the endpoint's id).
func (o *endpointOptions) applyTo(ep *schemas.Endpoint) {
	if o.FilterSet {
		ep.Filter = o.Filter
	}
	if o.RateLimitSet {
		ep.RateLimit = o.RateLimit
	}
}

// noHeaders is the view of an endpoint without headers (shared, never modified).
var noHeaders = map[string]string{}

// maskedHeaders are the headers as answers show them.
func maskedHeaders(e *endpoint.Entry) map[string]string {
	if len(e.Headers) == 0 {
		return noHeaders
	}
	out := make(map[string]string, len(e.Headers))
	for _, h := range e.Headers {
		out[h.Name] = maskValue("")
	}
	for _, h := range e.DeliveryHeaders() {
		out[h.Name] = maskValue(h.Value)
	}
	return out
}

// maskValue shows a header value without revealing it: a value of at least
// 12 characters shows its first 2 and "…" (enough to tell two tokens apart),
// a shorter one (or one that cannot be decrypted) "••••".
func maskValue(v string) string {
	if utf8.RuneCountInString(v) < 12 {
		return "••••"
	}
	_, a := utf8.DecodeRuneInString(v)
	_, b := utf8.DecodeRuneInString(v[a:])
	return v[:a+b] + "…"
}

// withOptions adds the options to an endpoint's view.
func withOptions(v *endpointView, e *endpoint.Entry) {
	v.Headers = maskedHeaders(e)
	if len(e.Filter) > 0 {
		v.Filter = e.Filter
	} else {
		v.Filter = json.RawMessage("null")
	}
	if e.RateLimit > 0 {
		n := e.RateLimit
		v.RateLimit = &n
	}
}
