package endpoint

import (
	"sort"

	"github.com/zaits/webhooks/schemas"
)

// Header is one static request header of an endpoint, in clear.
type Header struct {
	Name, Value string
}

// options are an entry's delivery options in the form their users need:
// the headers decrypted (the dispatcher sends them, the gateway masks
// them) and the filter compiled once per endpoint version (the router
// matches every event against it).
type options struct {
	headers []Header
	filter  *schemas.Filter
}

// DeliveryHeaders returns the endpoint's static headers in clear, in name
// order (Headers, the stored field, has them encrypted). The slice is
// shared: do not modify it.
func (e *Entry) DeliveryHeaders() []Header { return e.headers }

// CompiledFilter returns the endpoint's filter compiled when its record was
// applied; nil when it has none (every subscribed event matches).
func (e *Entry) CompiledFilter() *schemas.Filter { return e.filter }

// headerAAD binds a header's ciphertext to its endpoint and name, so it
// can be moved neither to another endpoint nor to another header.
func headerAAD(id, name string) string { return id + "\nheader " + name }

// SealHeaders encrypts headers for endpoint id, in name order.
func (s *Store) SealHeaders(id string, headers []Header) []schemas.EndpointHeader {
	if len(headers) == 0 {
		return nil
	}
	out := make([]schemas.EndpointHeader, len(headers))
	for i, h := range headers {
		out[i] = schemas.EndpointHeader{Name: h.Name, Ciphertext: s.cipher.Seal(headerAAD(id, h.Name), []byte(h.Value))}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// openOptions decrypts the headers and compiles the filter of a record
// being applied. What the gateway would have refused (a header it may not
// set, a filter that does not compile: a record of another version, or
// tampered with) is logged and left out: such a header is not sent, and
// without its filter the endpoint receives every subscribed event (more
// deliveries rather than silently fewer).
func (s *Store) openOptions(ep *schemas.Endpoint) options {
	var o options
	for _, h := range ep.Headers {
		if schemas.ReservedHeader(h.Name) || !schemas.HeaderToken(h.Name) {
			s.log.Error("endpoint store: a header the delivery sets itself is not sent", "endpoint", ep.ID, "header", h.Name)
			continue
		}
		v, err := s.cipher.Open(headerAAD(ep.ID, h.Name), h.Ciphertext)
		if err != nil {
			s.log.Error("endpoint store: header value not decryptable; the header is not sent", "endpoint", ep.ID, "header", h.Name, "err", err)
			continue
		}
		o.headers = append(o.headers, Header{Name: h.Name, Value: string(v)})
	}
	if len(ep.Filter) > 0 {
		f, err := schemas.CompileFilter(ep.Filter)
		if err != nil {
			s.log.Error("endpoint store: filter does not compile; the endpoint receives every subscribed event", "endpoint", ep.ID, "err", err)
		} else {
			o.filter = f
		}
	}
	return o
}
