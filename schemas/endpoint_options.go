package schemas

import "strings"

// Limits of an endpoint's delivery options (the gateway validates them).
const (
	// MaxEndpointHeaders bounds an endpoint's static headers.
	MaxEndpointHeaders = 20
	// MaxHeaderNameBytes bounds a header name.
	MaxHeaderNameBytes = 256
	// MaxHeaderValueBytes bounds a header value.
	MaxHeaderValueBytes = 1024
	// MaxRateLimit bounds an endpoint's rate limit, in deliveries per second.
	MaxRateLimit = 10000
)

// EndpointHeader is one static request header of an endpoint.
type EndpointHeader struct {
	Name string `json:"name"`
	// Ciphertext is base64(nonce || AES-256-GCM(value)), bound to the
	// endpoint id and the header name.
	Ciphertext string `json:"ciphertext"`
}

// reservedHeaders are the request headers the delivery sets itself or that
// belong to the connection (hop-by-hop, RFC 9110 7.6.1), in lower case.
var reservedHeaders = map[string]bool{
	"content-type": true, "content-length": true, "content-encoding": true, "host": true, "user-agent": true,
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authenticate": true, "proxy-authorization": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "expect": true,
}

// ReservedHeader reports whether name is set by the delivery itself (or is
// a hop-by-hop header), so an endpoint may not set it: Content-Type,
// Content-Length, Content-Encoding, Host, User-Agent, X-Zaits-*, webhook-*
// and the hop-by-hop headers, in any case.
func ReservedHeader(name string) bool {
	l := strings.ToLower(name)
	return reservedHeaders[l] || strings.HasPrefix(l, "x-zaits-") || strings.HasPrefix(l, "webhook-")
}

// HeaderToken reports whether name is an RFC 9110 token (a valid field name).
func HeaderToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
