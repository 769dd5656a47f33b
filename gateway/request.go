package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/dispatcher"
	"github.com/zaits/webhooks/schemas"
)

// Request limits of the management API.
const (
	// MaxBodyBytes bounds a management request body; larger is 413.
	MaxBodyBytes = 64 << 10
	// MaxURLLength bounds an endpoint URL, in bytes.
	MaxURLLength = 2048
	// MaxDescriptionLength bounds a description, in characters.
	MaxDescriptionLength = 512
	// MaxEvents bounds the subscriptions of one endpoint.
	MaxEvents = 100
	// MaxPerPage bounds per_page on every list.
	MaxPerPage = 100
	// DefaultPerPage is per_page when not given.
	DefaultPerPage = 25
)

// requestError is a 4xx answer: status, stable code, message, field issues.
type requestError struct {
	status  int
	code    string
	message string
	details []schemas.FieldIssue
}

func (e *requestError) Error() string { return e.code + ": " + e.message }

func (e *requestError) write(ctx *fasthttp.RequestCtx) {
	writeError(ctx, e.status, e.code, e.message, e.details...)
}

func invalid(details ...schemas.FieldIssue) *requestError {
	msg := "the request is invalid"
	if len(details) > 0 {
		msg = details[0].Field + ": " + details[0].Issue
		if len(details) > 1 {
			msg += fmt.Sprintf(" (and %d more problems)", len(details)-1)
		}
	}
	return &requestError{status: fasthttp.StatusBadRequest, code: "validation_error", message: msg, details: details}
}

// endpointInput is the body of create and update: every field optional at
// the decoding level; nil means "not given" (JSON null counts as not given).
type endpointInput struct {
	URL         *string
	Events      []string
	EventsSet   bool
	Description *string
	Active      *bool
	Ordering    *string
}

// applyTo sets the fields given in the input on ep (create and update).
func (in *endpointInput) applyTo(ep *schemas.Endpoint) {
	if in.URL != nil {
		ep.URL = *in.URL
	}
	if in.EventsSet {
		ep.Events = in.Events
	}
	if in.Description != nil {
		ep.Description = *in.Description
	}
	if in.Active != nil {
		if *in.Active && !ep.Active {
			now := time.Now().UTC().Truncate(time.Second)
			ep.ActivatedAt = &now
		}
		// Set by the account: a reason the system gave no longer applies.
		ep.Active, ep.DisabledReason, ep.DisabledAt = *in.Active, "", nil
	}
	if in.Ordering != nil {
		ep.Ordering = *in.Ordering
	}
}

// urlPolicy is what the deployment allows in endpoint URLs.
type urlPolicy struct {
	AllowHTTP    bool // http:// besides https://
	AllowPrivate bool // literal loopback, private and link-local addresses, "localhost", special-use and single-label names
	// Refused is the delivery guard's judgment of a literal address ("" when
	// deliveries may connect to it; see dispatcher.Client.AddressRefused).
	// Nil: the guard's rules without an allow-list or development mode.
	Refused func(netip.Addr) string
}

// checkBody enforces the body size and the JSON content type.
func checkBody(ctx *fasthttp.RequestCtx) *requestError {
	body := ctx.PostBody()
	if len(body) > MaxBodyBytes {
		return &requestError{status: fasthttp.StatusRequestEntityTooLarge, code: "payload_too_large",
			message: fmt.Sprintf("the request body is %d bytes; at most %d are accepted", len(body), MaxBodyBytes)}
	}
	if len(body) > 0 && !isJSON(ctx.Request.Header.ContentType()) {
		return &requestError{status: fasthttp.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: fmt.Sprintf("Content-Type must be application/json, got %q", ctx.Request.Header.ContentType())}
	}
	return nil
}

func isJSON(ct []byte) bool {
	mt, _, err := mime.ParseMediaType(string(ct))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// decodeObject decodes body as one JSON object whose keys must all be in
// allowed; each value is kept raw for typed decoding by the caller. The
// body must be strict JSON (schemas.CheckJSON): invalid UTF-8, an unpaired
// surrogate escape, a duplicate key or nesting past schemas.MaxJSONDepth
// is a validation error of the field it is in.
func decodeObject(body []byte, allowed ...string) (map[string]json.RawMessage, *requestError) {
	return decodeObjectDepth(body, schemas.MaxJSONDepth, allowed...)
}

// decodeObjectDepth is decodeObject with its own nesting limit.
func decodeObjectDepth(body []byte, depth int, allowed ...string) (map[string]json.RawMessage, *requestError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &requestError{status: fasthttp.StatusBadRequest, code: "invalid_json", message: "the request body must be a JSON object"}
	}
	if jerr := schemas.CheckJSON(body, depth); jerr != nil && !jerr.Syntax && jerr.Path != "" && jerr.Path[0] != '[' {
		return nil, invalid(schemas.FieldIssue{Field: jerr.Path, Issue: jerr.Issue})
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) || (err == nil && obj == nil) {
			return nil, &requestError{status: fasthttp.StatusBadRequest, code: "invalid_json", message: "the request body must be a JSON object"}
		}
		return nil, &requestError{status: fasthttp.StatusBadRequest, code: "invalid_json", message: "the request body is not valid JSON"}
	}
	var unknown []schemas.FieldIssue
	for k := range obj {
		if !contains(allowed, k) {
			unknown = append(unknown, schemas.FieldIssue{Field: k, Issue: "unknown field"})
		}
	}
	if len(unknown) > 0 {
		sort.Slice(unknown, func(i, j int) bool { return unknown[i].Field < unknown[j].Field })
		return nil, invalid(unknown...)
	}
	return obj, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nullValue(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// field decodes obj[name] into dst unless it is absent or null; it reports
// whether a value was set, or appends a type issue.
func field[T any](obj map[string]json.RawMessage, name, want string, dst *T, issues *[]schemas.FieldIssue) bool {
	raw, ok := obj[name]
	if !ok || nullValue(raw) {
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		*issues = append(*issues, schemas.FieldIssue{Field: name, Issue: "must be " + want})
		return false
	}
	return true
}

// decodeEndpoint decodes and validates a create (create=true) or update body.
func decodeEndpoint(body []byte, create bool, pol urlPolicy) (endpointInput, *requestError) {
	var in endpointInput
	obj, rerr := decodeObject(body, "url", "events", "description", "active", "ordering")
	if rerr != nil {
		return in, rerr
	}
	var issues []schemas.FieldIssue
	var s string
	if field(obj, "url", "a string", &s, &issues) {
		in.URL = &s
	}
	in.EventsSet = field(obj, "events", "an array of strings", &in.Events, &issues)
	var d string
	if field(obj, "description", "a string", &d, &issues) {
		in.Description = &d
	}
	var a bool
	if field(obj, "active", "a boolean", &a, &issues) {
		in.Active = &a
	}
	var o string
	if field(obj, "ordering", `"default" or "strict"`, &o, &issues) {
		in.Ordering = &o
	}
	if len(issues) > 0 {
		return in, invalid(issues...)
	}

	if in.URL != nil {
		if issue := checkURL(*in.URL, pol); issue != "" {
			issues = append(issues, schemas.FieldIssue{Field: "url", Issue: issue})
		}
	} else if create {
		issues = append(issues, schemas.FieldIssue{Field: "url", Issue: "is required"})
	}
	if in.EventsSet {
		issues = append(issues, checkEvents(in.Events)...)
	} else if create {
		issues = append(issues, schemas.FieldIssue{Field: "events", Issue: "is required"})
	}
	if in.Description != nil {
		if n := utf8.RuneCountInString(*in.Description); n > MaxDescriptionLength {
			issues = append(issues, schemas.FieldIssue{Field: "description", Issue: fmt.Sprintf("must be at most %d characters, got %d", MaxDescriptionLength, n)})
		}
	}
	if in.Ordering != nil && *in.Ordering != schemas.OrderingDefault && *in.Ordering != schemas.OrderingStrict {
		issues = append(issues, schemas.FieldIssue{Field: "ordering", Issue: `must be "default" or "strict"`})
	}
	if !create && len(obj) == 0 {
		issues = append(issues, schemas.FieldIssue{Field: "body", Issue: "must change at least one of url, events, description, active, ordering"})
	}
	if len(issues) > 0 {
		return in, invalid(issues...)
	}
	return in, nil
}

// checkURL returns why u is not an acceptable endpoint URL, or "".
func checkURL(u string, pol urlPolicy) string {
	if len(u) > MaxURLLength {
		return fmt.Sprintf("must be at most %d characters, got %d", MaxURLLength, len(u))
	}
	if strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "must not contain spaces or control characters"
	}
	p, err := url.Parse(u)
	if err != nil {
		return "is not a valid URL"
	}
	switch {
	case !p.IsAbs() || p.Opaque != "" || p.Host == "":
		return "must be an absolute URL such as https://example.com/webhooks"
	case p.Scheme == "http" && !pol.AllowHTTP, p.Scheme != "https" && p.Scheme != "http":
		return "must use https"
	case p.User != nil:
		return "must not contain user information"
	case p.Fragment != "" || strings.Contains(u, "#"):
		return "must not contain a fragment"
	}
	host := p.Hostname()
	if host == "" {
		return "must name a host"
	}
	if port := p.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	return checkHost(host, strings.HasPrefix(p.Host, "["), pol)
}

// specialUseNames are domains that never resolve on the internet (RFC
// 6761, 6762, 7686, 8375; ICANN's .internal): an endpoint there can never
// be delivered to outside a private network.
var specialUseNames = []string{"localhost", "localdomain", "local", "internal", "invalid", "test", "example", "onion", "home.arpa", "lan"}

// checkHost returns why host (of a URL; bracketed says it was an IPv6
// literal) cannot be an endpoint's, or "". In every mode a name is ASCII
// letters, digits, hyphens and dots: Go resolves no internationalised
// names (give them in punycode, xn--…), and a URL parser's fullwidth
// digits or ideographic dots are not what a resolver sees. A name whose
// last label is a number is an IPv4 address in a form resolvers disagree
// on (127.1, 2130706433, 0x7f000001, 017700000001). A literal address is
// judged by the delivery guard; with AllowPrivate, loopback, private and
// link-local ones are accepted (the dispatcher delivers to them only where
// -delivery.allow-networks allows), but never the IPv6 forms that merely
// carry such an IPv4 address.
func checkHost(host string, bracketed bool, pol urlPolicy) string {
	const ascii = "must name its host in ASCII letters, digits, hyphens and dots (an internationalised name in its punycode form, xn--…)"
	if bracketed {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return "has an invalid IPv6 address"
		}
		return checkAddr(ip, pol)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return ascii
		}
	}
	name := strings.ToLower(strings.TrimSuffix(host, ".")) // the fully qualified form names the same host
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "has an invalid host name (empty labels, labels over 63 characters or starting or ending with a hyphen)"
		}
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		return checkAddr(ip, pol)
	}
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		return "is an IPv4 address in a form resolvers disagree on (hexadecimal, octal, shortened or one number): write it as four decimal numbers such as 93.184.216.34"
	}
	if len(name) > 253 {
		return "has a host name over 253 characters"
	}
	if pol.AllowPrivate {
		return ""
	}
	if len(labels) == 1 {
		return "must name a fully qualified host: a single label such as \"" + schemas.Clip(name, 64) + "\" resolves only inside a network"
	}
	for _, s := range specialUseNames {
		if name == s || strings.HasSuffix(name, "."+s) {
			return "names a special-use domain (." + s + ") that never resolves on the internet"
		}
	}
	return ""
}

// isNumericLabel reports a label a URL parser takes for an IPv4 part:
// decimal digits, or 0x and hexadecimal digits.
func isNumericLabel(l string) bool {
	if len(l) > 1 && (l[:2] == "0x" || l[:2] == "0X") {
		l = l[2:]
		return strings.Trim(l, "0123456789abcdefABCDEF") == ""
	}
	return l != "" && strings.Trim(l, "0123456789") == ""
}

// checkAddr judges a literal address by the delivery guard.
func checkAddr(ip netip.Addr, pol urlPolicy) string {
	if ip.Zone() != "" {
		return "must not give an IPv6 zone"
	}
	refused := pol.Refused
	if refused == nil {
		refused = dispatcher.ClassifyAddress
	}
	switch why := refused(ip); why {
	case "":
		return ""
	case "loopback", "private", "link-local":
		if pol.AllowPrivate {
			return ""
		}
		return "must not be a " + why + " address"
	default:
		return "is an address deliveries are refused: " + why
	}
}

// checkEvents validates a subscription list.
func checkEvents(events []string) []schemas.FieldIssue {
	if len(events) == 0 {
		return []schemas.FieldIssue{{Field: "events", Issue: "must contain at least one event type"}}
	}
	if len(events) > MaxEvents {
		return []schemas.FieldIssue{{Field: "events", Issue: fmt.Sprintf("must contain at most %d entries", MaxEvents)}}
	}
	var issues []schemas.FieldIssue
	seen := make(map[string]bool, len(events))
	for i, e := range events {
		f := fmt.Sprintf("events[%d]", i)
		switch {
		case seen[e]:
			issues = append(issues, schemas.FieldIssue{Field: f, Issue: fmt.Sprintf("duplicate event type %q", e)})
		case !schemas.IsSubscription(e):
			issues = append(issues, schemas.FieldIssue{Field: f, Issue: fmt.Sprintf("%q is not an event type of GET /v1/webhooks/events nor a wildcard such as \"document.*\" or \"*\"", schemas.Clip(e, 100))})
		}
		seen[e] = true
	}
	return issues
}

// decodeTest decodes the optional body of POST …/test: {"event_type": …}.
func decodeTest(body []byte) (string, *requestError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return schemas.TestEventType, nil
	}
	obj, rerr := decodeObject(body, "event_type")
	if rerr != nil {
		return "", rerr
	}
	var issues []schemas.FieldIssue
	et := schemas.TestEventType
	field(obj, "event_type", "a string", &et, &issues)
	if len(issues) == 0 && et != schemas.TestEventType && !schemas.IsEventType(et) {
		issues = append(issues, schemas.FieldIssue{Field: "event_type", Issue: fmt.Sprintf("%q is neither \"test\" nor an event type of GET /v1/webhooks/events", schemas.Clip(et, 100))})
	}
	if len(issues) > 0 {
		return "", invalid(issues...)
	}
	return et, nil
}

// pageParams are the page and per_page query parameters.
type pageParams struct{ page, perPage int }

// parsePage reads page (default 1, ≥ 1) and per_page (default 25, 1..100).
func parsePage(args *fasthttp.Args, issues *[]schemas.FieldIssue) pageParams {
	p := pageParams{page: 1, perPage: DefaultPerPage}
	if args.Has("page") {
		n, err := strconv.Atoi(string(args.Peek("page")))
		if err != nil || n < 1 {
			*issues = append(*issues, schemas.FieldIssue{Field: "page", Issue: "must be a whole number of at least 1"})
		} else {
			p.page = n
		}
	}
	if args.Has("per_page") {
		n, err := strconv.Atoi(string(args.Peek("per_page")))
		if err != nil || n < 1 || n > MaxPerPage {
			*issues = append(*issues, schemas.FieldIssue{Field: "per_page", Issue: fmt.Sprintf("must be a whole number from 1 to %d", MaxPerPage)})
		} else {
			p.perPage = n
		}
	}
	return p
}

// bounds returns the slice bounds of this page within total items.
func (p pageParams) bounds(total int) (lo, hi int) {
	lo = min(total, (p.page-1)*p.perPage)
	if p.page-1 > total/p.perPage { // avoids overflow for huge page numbers
		lo = total
	}
	return lo, min(total, lo+p.perPage)
}

// parseBool reads an optional boolean query parameter ("true" or "false").
func parseBool(args *fasthttp.Args, name string, issues *[]schemas.FieldIssue) *bool {
	if !args.Has(name) {
		return nil
	}
	switch string(args.Peek(name)) {
	case "true":
		v := true
		return &v
	case "false":
		v := false
		return &v
	}
	*issues = append(*issues, schemas.FieldIssue{Field: name, Issue: `must be "true" or "false"`})
	return nil
}

// ifMatch is a request's If-Match header (RFC 9110, 13.1.1): absent,
// "*", or a list of entity tags. Endpoint versions are strong tags, `"3"`
// (a bare 3 is accepted too); a weak tag (W/"3") never matches, since
// If-Match compares strongly.
type ifMatch struct {
	given    bool
	any      bool    // "*": whatever version exists
	versions []int64 // the strong tags
}

// expected returns the version a write must find (0: any), or false when
// the header cannot match current, the endpoint's version now: the write
// is then a conflict.
func (m ifMatch) expected(current int64) (int64, bool) {
	if !m.given || m.any {
		return 0, true
	}
	for _, v := range m.versions {
		if v == current {
			return v, true // the store checks it again, atomically
		}
	}
	return 0, false
}

// parseIfMatch reads the optional If-Match header.
func parseIfMatch(ctx *fasthttp.RequestCtx) (ifMatch, *requestError) {
	h := strings.TrimSpace(string(ctx.Request.Header.Peek(fasthttp.HeaderIfMatch)))
	if h == "" {
		return ifMatch{}, nil
	}
	if h == "*" {
		return ifMatch{given: true, any: true}, nil
	}
	bad := invalid(schemas.FieldIssue{Field: "If-Match", Issue: `must be "*" or entity tags of the endpoint's version, such as "3" (a whole number of at least 1)`})
	m := ifMatch{given: true}
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		weak := strings.HasPrefix(tag, "W/")
		tag = strings.TrimPrefix(tag, "W/")
		if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
			tag = tag[1 : len(tag)-1]
		} else if weak || strings.ContainsRune(tag, '"') {
			return ifMatch{}, bad
		}
		n, err := strconv.ParseInt(tag, 10, 64)
		if err != nil || n < 1 {
			return ifMatch{}, bad
		}
		if !weak {
			m.versions = append(m.versions, n)
		}
	}
	return m, nil
}
