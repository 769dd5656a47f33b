package gateway

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/flagenv"
)

// Limits of the public HTTP server. Nothing of a request body is read
// before its headers are judged: the server streams bodies
// (StreamRequestBody), and the front handler (front) reads one only when
// the route needs a key and the key is valid, the method carries a body
// and the declared length is within the route's limit — at most one byte
// of a refused body has arrived into the read buffer when the refusal is
// sent (none with Expect: 100-continue).
const (
	// MaxRequestTargetBytes bounds the request target (path and query);
	// longer is 414.
	MaxRequestTargetBytes = 2 << 10
	// MaxHeaderBytes bounds the request line and the headers together (the
	// connection's read buffer); larger is 431.
	MaxHeaderBytes = 8 << 10
)

// LimitsConfig bounds what the public API accepts before a handler runs.
// A zero field means its default; where "off" is a setting, a negative
// value is off (their flags take 0 for off).
type LimitsConfig struct {
	// MaxConns bounds the connections served at once; one more is answered
	// 503 with Retry-After and closed. Default 4096.
	MaxConns int
	// MaxConnsPerIP bounds one client address's connections (an IPv6 /64
	// counts as one address); one more is answered 429. Behind a proxy
	// every client has the proxy's address: raise or disable it there.
	// Default 256.
	MaxConnsPerIP int
	// HeaderTimeout bounds reading a request line and its headers: from
	// the connection's opening for its first request, from the first byte
	// for later ones. Default 10s.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request body, from the end of its
	// headers. Default 30s.
	BodyTimeout time.Duration
	// AuthFailureRate is how many failed authentications per second one
	// client address may make (token bucket of AuthFailureBurst); beyond
	// it every request from that address that needs a key answers 429
	// with Retry-After, without its key being looked at. Default 1.
	AuthFailureRate float64
	// AuthFailureBurst is the bucket size. Default 10.
	AuthFailureBurst int
}

func (c LimitsConfig) withDefaults() LimitsConfig {
	flagenv.Default(&c.MaxConns, 4096)
	flagenv.Default(&c.MaxConnsPerIP, 256)
	flagenv.Default(&c.HeaderTimeout, 10*time.Second)
	flagenv.Default(&c.BodyTimeout, 30*time.Second)
	flagenv.Default(&c.AuthFailureRate, 1)
	flagenv.Default(&c.AuthFailureBurst, 10)
	return c
}

// RegisterFlags registers the limit flags of the gateway with their defaults.
func (c *LimitsConfig) RegisterFlags(fs *flag.FlagSet) {
	d := LimitsConfig{}.withDefaults()
	flagenv.OffInt(fs, &c.MaxConns, "gateway.max-conns", d.MaxConns, "connections to the public API served at once; one more is answered 503 (0: no limit)")
	flagenv.OffInt(fs, &c.MaxConnsPerIP, "gateway.max-conns-per-ip", d.MaxConnsPerIP, "connections from one client address (IPv6: one /64) at once; one more is answered 429 (0: no limit; behind a proxy every client has its address)")
	fs.DurationVar(&c.HeaderTimeout, "gateway.header-timeout", d.HeaderTimeout, "time to send a request line and its headers")
	fs.DurationVar(&c.BodyTimeout, "gateway.body-timeout", d.BodyTimeout, "time to send a request body, from the end of its headers")
	flagenv.OffFloat64(fs, &c.AuthFailureRate, "gateway.auth-failure-rate", d.AuthFailureRate, "failed authentications per second per client address; beyond it (and the burst) requests needing a key answer 429 (0: no limit)")
	fs.IntVar(&c.AuthFailureBurst, "gateway.auth-failure-burst", d.AuthFailureBurst, "burst of the failed-authentication limit")
}

func (c LimitsConfig) validate() error {
	var errs []error
	if c.HeaderTimeout < 100*time.Millisecond || c.HeaderTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("gateway.header-timeout: must be 100ms..10m, got %s", c.HeaderTimeout))
	}
	if c.BodyTimeout < 100*time.Millisecond || c.BodyTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("gateway.body-timeout: must be 100ms..10m, got %s", c.BodyTimeout))
	}
	if math.IsNaN(c.AuthFailureRate) || c.AuthFailureRate > maxRateLimit {
		errs = append(errs, fmt.Errorf("gateway.auth-failure-rate: must be at most %d per second, got %g", maxRateLimit, c.AuthFailureRate))
	}
	if c.AuthFailureRate > 0 && c.AuthFailureBurst < 1 {
		errs = append(errs, fmt.Errorf("gateway.auth-failure-burst: must be at least 1, got %d", c.AuthFailureBurst))
	}
	return errors.Join(errs...)
}

// bodyRoute is what a route lets a request send.
type bodyRoute struct {
	limit  int  // body bytes at most
	public bool // no key needed (the OpenAPI document): a body is never read
	ingest bool // an event route (its 401 message and metrics)
}

// routeOf is the body limit of the route serving path. Every route that
// is not listed needs a key and takes at most MaxBodyBytes (the management
// API; a new route with larger bodies adds itself here).
func routeOf(path []byte) bodyRoute {
	switch string(path) {
	case "/v1/events":
		return bodyRoute{limit: MaxEventBytes, ingest: true}
	case "/v1/events/batch":
		return bodyRoute{limit: MaxBatchBytes, ingest: true}
	case "/v1/openapi.json":
		return bodyRoute{public: true}
	}
	return bodyRoute{limit: MaxBodyBytes}
}

// takesBody reports the methods whose body a route may read.
func takesBody(method []byte) bool {
	switch string(method) {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch:
		return true
	}
	return false
}

// hasBody reports whether the request announces a body: a positive
// Content-Length or chunked encoding.
func hasBody(h *fasthttp.RequestHeader) bool {
	cl := h.ContentLength()
	return cl > 0 || cl == -1
}

// pathOf is the path of a request target (origin or absolute form),
// before fasthttp's normalisation: only HeaderReceived needs it, to size
// what is read ahead; the front handler judges the normalised path.
func pathOf(target []byte) []byte {
	if i := bytes.Index(target, []byte("://")); i >= 0 {
		rest := target[i+3:]
		j := bytes.IndexByte(rest, '/')
		if j < 0 {
			return []byte("/")
		}
		target = rest[j:]
	}
	if i := bytes.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	return target
}

// headerReceived is fasthttp's HeaderReceived: the body's read timeout,
// and how much of the body is read ahead before the handler runs — one
// byte (fasthttp's least) when the request will be refused: a key is
// needed and missing or wrong, or more is declared than the route takes.
func (g *Gateway) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	rc := fasthttp.RequestConfig{ReadTimeout: g.cfg.Limits.BodyTimeout}
	if !hasBody(h) {
		return rc
	}
	rt := routeOf(pathOf(h.RequestURI()))
	if _, ok := g.keys.fromHeader(h.Peek(fasthttp.HeaderAuthorization)); !ok || rt.public || !takesBody(h.Method()) || h.ContentLength() > rt.limit {
		rc.MaxRequestBodySize = 1
	} else {
		rc.MaxRequestBodySize = rt.limit
	}
	return rc
}

// checkHeaders refuses what the headers alone make unacceptable: an
// over-long request target (414), Content-Length and Transfer-Encoding
// together (400: fasthttp would silently prefer the chunked framing), a
// Content-Encoding other than identity on a body (415).
func checkHeaders(ctx *fasthttp.RequestCtx) *requestError {
	h := &ctx.Request.Header
	if n := len(h.RequestURI()); n > MaxRequestTargetBytes {
		return &requestError{status: fasthttp.StatusRequestURITooLong, code: "uri_too_long",
			message: fmt.Sprintf("the request target is %d bytes; at most %d are accepted", n, MaxRequestTargetBytes)}
	}
	if !tokenNames(h.RawHeaders()) {
		return &requestError{status: fasthttp.StatusBadRequest, code: "bad_request",
			message: "a header name is not an RFC 9110 token (letters, digits and !#$%&'*+-.^_`|~, directly followed by ':')"}
	}
	// fasthttp closes the connection of a request with both framings; only
	// then are the raw headers searched.
	if h.ConnectionClose() && hasHeader(h.RawHeaders(), "content-length") && hasHeader(h.RawHeaders(), "transfer-encoding") {
		return &requestError{status: fasthttp.StatusBadRequest, code: "bad_request",
			message: "Content-Length and Transfer-Encoding must not both be given"}
	}
	if ce := h.Peek(fasthttp.HeaderContentEncoding); len(ce) > 0 && hasBody(h) && !bytes.EqualFold(bytes.TrimSpace(ce), []byte("identity")) {
		return &requestError{status: fasthttp.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "Content-Encoding must be identity (or absent): compressed bodies are not accepted"}
	}
	return nil
}

// tchar marks the characters of an RFC 9110 token.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// tokenNames reports whether every header line of raw names its field
// with a token directly followed by ':' (RFC 9112 5.1: whitespace before
// the colon must be refused; fasthttp accepts it).
func tokenNames(raw []byte) bool {
	start, n := true, 0 // in a name, of n characters so far
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\n':
			start, n = true, 0
		case !start:
		case c == ':':
			if n == 0 {
				return false
			}
			start = false
		case c == '\r' && n == 0 && i+1 < len(raw) && raw[i+1] == '\n':
		case !tchar[c]:
			return false
		default:
			n++
		}
	}
	return true
}

// hasHeader reports whether raw (the request's header lines) has a line
// named name (lower case).
func hasHeader(raw []byte, name string) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if k, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return true
		}
	}
	return false
}

func tooLarge(declared, limit int) *requestError {
	msg := fmt.Sprintf("the request body is more than %d bytes; at most %d are accepted", limit, limit)
	if declared > 0 {
		msg = fmt.Sprintf("the request body is %d bytes; at most %d are accepted", declared, limit)
	}
	return &requestError{status: fasthttp.StatusRequestEntityTooLarge, code: "payload_too_large", message: msg}
}

// front is the server's handler in front of the router: it judges the
// headers (checkHeaders, the key, the route's body limit) before reading
// any of the body, reads an admitted body within the limit, and answers
// HEAD on a GET route like the GET without the body.
func (g *Gateway) front(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if rerr := checkHeaders(ctx); rerr != nil {
			rerr.write(ctx)
			return
		}
		if hasBody(&ctx.Request.Header) {
			buf, rerr := g.admitBody(ctx)
			if buf != nil {
				defer bodyBufs.Put(buf)
			}
			if rerr != nil {
				if routeOf(ctx.Path()).ingest && rerr.status == fasthttp.StatusRequestEntityTooLarge {
					g.ingest.counts.rejected.WithLabelValues("http", "too_large").Inc()
				}
				rerr.write(ctx)
				return
			}
		}
		if ctx.IsHead() {
			ctx.Request.Header.SetMethod(fasthttp.MethodGet)
			next(ctx)
			ctx.Request.Header.SetMethod(fasthttp.MethodHead)
			ctx.Response.SkipBody = true
			return
		}
		next(ctx)
	}
}

// bodyBufs hold admitted bodies until their handler returns.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// admitBody reads the body of a request that may send one, or drops it
// unread: for a public route or a method without a body, and when a key is
// needed and not valid (the route then answers 401 or 429 from the
// headers). A body over the route's limit is 413, declared or not. The
// returned buffer holds the body until the handler returns.
func (g *Gateway) admitBody(ctx *fasthttp.RequestCtx) (*[]byte, *requestError) {
	req := &ctx.Request
	rt := routeOf(ctx.Path())
	if rt.public || !takesBody(req.Header.Method()) {
		req.SetBodyRaw(nil)
		return nil, nil
	}
	if _, ok := g.authenticate(ctx); !ok {
		req.SetBodyRaw(nil)
		return nil, nil
	}
	cl := req.Header.ContentLength()
	if cl > rt.limit {
		req.SetBodyRaw(nil)
		return nil, tooLarge(cl, rt.limit)
	}
	if !req.IsBodyStream() { // already in memory (a request built in-process)
		if len(req.Body()) > rt.limit {
			return nil, tooLarge(len(req.Body()), rt.limit)
		}
		return nil, nil
	}
	bp := bodyBufs.Get().(*[]byte)
	b := (*bp)[:0]
	var err error
	if cl >= 0 {
		b = slices.Grow(b, cl)[:cl]
		_, err = io.ReadFull(req.BodyStream(), b)
	} else {
		b, err = readLimited(b, req.BodyStream(), rt.limit+1)
	}
	*bp = b[:0]
	if err != nil {
		req.SetBodyRaw(nil)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return bp, &requestError{status: fasthttp.StatusBadRequest, code: "bad_request",
				message: fmt.Sprintf("the request body was not sent within %s", g.cfg.Limits.BodyTimeout)}
		}
		return bp, &requestError{status: fasthttp.StatusBadRequest, code: "bad_request", message: "the request body could not be read (it ended early or its chunks are malformed)"}
	}
	if len(b) > rt.limit {
		req.SetBodyRaw(nil)
		return bp, tooLarge(0, rt.limit)
	}
	req.SetBodyRaw(b)
	return bp, nil
}

// readLimited appends r to b until EOF or n bytes.
func readLimited(b []byte, r io.Reader, n int) ([]byte, error) {
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		m, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// expect is fasthttp's ExpectHandler, for requests that ask before
// sending their body (Expect: 100-continue): "100 Continue" only when the
// body would be read, else the refusal itself (the connection is then
// closed).
func (g *Gateway) expect(ctx *fasthttp.RequestCtx) int {
	if rerr := checkHeaders(ctx); rerr != nil {
		rerr.write(ctx)
		return rerr.status
	}
	rt := routeOf(ctx.Path())
	if !hasBody(&ctx.Request.Header) || rt.public || !takesBody(ctx.Request.Header.Method()) {
		return fasthttp.StatusContinue
	}
	if _, ok := g.authenticate(ctx); !ok {
		g.unauthorized(ctx, rt.ingest)
		return ctx.Response.StatusCode()
	}
	if cl := ctx.Request.Header.ContentLength(); cl > rt.limit {
		if rt.ingest {
			g.ingest.counts.rejected.WithLabelValues("http", "too_large").Inc()
		}
		rerr := tooLarge(cl, rt.limit)
		rerr.write(ctx)
		return rerr.status
	}
	return fasthttp.StatusContinue
}
