package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/schemas"
)

// ClientConfig configures the delivery HTTP client, shared by the
// dispatcher and the gateway's test-delivery endpoint (the delivery.* flags).
// A zero field means its documented default.
type ClientConfig struct {
	// Timeout bounds one attempt: dial, request and response. Default 10s.
	Timeout time.Duration
	// MaxResponseBytes is how much of a response body is read. Default 64 KiB.
	MaxResponseBytes int
	// ExcerptBytes is how much of it is kept as the excerpt. Default 1 KiB.
	ExcerptBytes int
	// MaxConnsPerHost bounds the connections to one host. Default 64.
	MaxConnsPerHost int
	// AllowNetworks are exempt from the address guard (development, tests,
	// bench). Allowing loopback or a private network lets endpoint URLs reach
	// every service listening there (databases, admin and metrics ports of
	// other programs): only the process's own listeners stay refused.
	AllowNetworks []netip.Prefix
	// Listeners are the process's own listening addresses, never delivered
	// to (shared by the components of one process). Nil: the client keeps
	// its own set, filled through Client.AddListener.
	Listeners *Listeners
	// Dev is development mode (the shared -dev flag): loopback receivers allowed.
	Dev bool
	// TLSConfig overrides the TLS settings (tests: a private root CA). Nil:
	// the system roots, certificates verified.
	TLSConfig *tls.Config
}

// RegisterFlags registers the delivery.* flags with their defaults.
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet) {
	d := ClientConfig{}.withDefaults()
	fs.DurationVar(&c.Timeout, "delivery.timeout", d.Timeout, "total time one delivery attempt may take (dial, request, response)")
	fs.IntVar(&c.MaxResponseBytes, "delivery.max-response-bytes", d.MaxResponseBytes, "how much of an endpoint's response body is read")
	fs.IntVar(&c.ExcerptBytes, "delivery.excerpt-bytes", d.ExcerptBytes, "how much of the response body is kept in the attempt record")
	fs.IntVar(&c.MaxConnsPerHost, "delivery.max-conns-per-host", d.MaxConnsPerHost, "connections to one endpoint host at most")
	fs.Var(prefixList{&c.AllowNetworks}, "delivery.allow-networks", "comma-separated CIDRs exempt from the address guard (e.g. 127.0.0.0/8 for a local receiver); endpoint URLs can then reach every service on those networks except this process's own ports")
}

// prefixList is the flag.Value of a comma-separated list of CIDRs.
type prefixList struct{ p *[]netip.Prefix }

func (l prefixList) String() string {
	if l.p == nil {
		return ""
	}
	parts := make([]string, len(*l.p))
	for i, p := range *l.p {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (l prefixList) Set(s string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return err
		}
		out = append(out, p.Masked())
	}
	*l.p = out
	return nil
}

// Validate reports every problem with the configuration at once.
func (c *ClientConfig) Validate() error {
	var errs []error
	if c.Timeout < 0 || c.Timeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("delivery.timeout: must be 0 (default 10s) to 5m, got %s", c.Timeout))
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("delivery.max-response-bytes: must be 0..16MiB, got %d", c.MaxResponseBytes))
	}
	if c.ExcerptBytes < 0 || c.ExcerptBytes > 64<<10 {
		errs = append(errs, fmt.Errorf("delivery.excerpt-bytes: must be 0..64KiB, got %d", c.ExcerptBytes))
	}
	if c.MaxConnsPerHost < 0 {
		errs = append(errs, fmt.Errorf("delivery.max-conns-per-host: must not be negative, got %d", c.MaxConnsPerHost))
	}
	for _, p := range c.AllowNetworks {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("delivery.allow-networks: invalid prefix %v", p))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field set to its default.
func (c ClientConfig) withDefaults() ClientConfig {
	flagenv.Default(&c.Timeout, 10*time.Second)
	flagenv.Default(&c.MaxResponseBytes, 64<<10)
	flagenv.Default(&c.ExcerptBytes, 1<<10)
	flagenv.Default(&c.MaxConnsPerHost, 64)
	return c
}

// UserAgent is sent with every delivery.
const UserAgent = "Zaits-Webhooks/1.0"

// Request is one delivery attempt.
type Request struct {
	URL string
	// Body is POSTed exactly.
	Body       []byte
	EventType  string
	DeliveryID string
	// Secrets sign the request: the current secret first, then the one a
	// rotation replaced while its overlap lasts (see sign.go for which
	// header each signs).
	Secrets [][]byte
	// Now is the webhook-timestamp; time.Now() when zero.
	Now time.Time
}

// Result is the outcome of one attempt.
type Result struct {
	// Status is the HTTP status; 0 when there was no response.
	Status  int
	Latency time.Duration
	// Excerpt is the start of the response body (valid UTF-8).
	Excerpt string
	// ErrCode is empty on success (2xx), else one of schemas.ErrCode*.
	ErrCode string
	// Err describes the failure for a person; nil on success.
	Err error
	// RetryAfter is the response's Retry-After (429 and 503 only); 0 if none.
	RetryAfter time.Duration
}

// OK reports a 2xx response.
func (r Result) OK() bool { return r.ErrCode == "" }

// ErrStatus is wrapped by a Result.Err for a non-2xx response.
var ErrStatus = errors.New("endpoint answered with a non-2xx status")

// Client POSTs signed deliveries through one shared fasthttp client whose
// dials pass the address guard.
type Client struct {
	cfg      ClientConfig
	guard    *guard
	hc       *fasthttp.Client
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewClient builds the client; reg (nil: none) receives the zaits_delivery_* metrics.
func NewClient(cfg ClientConfig, reg prometheus.Registerer) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Listeners == nil {
		cfg.Listeners = NewListeners()
	}
	g := &guard{allow: cfg.AllowNetworks, loopback: cfg.Dev, resolver: net.DefaultResolver, self: cfg.Listeners}
	c := &Client{
		cfg:   cfg,
		guard: g,
		hc: &fasthttp.Client{
			Name:                          UserAgent,
			DialTimeout:                   g.dial,
			TLSConfig:                     cfg.TLSConfig,
			MaxConnsPerHost:               cfg.MaxConnsPerHost,
			MaxConnWaitTimeout:            cfg.Timeout,
			MaxIdleConnDuration:           30 * time.Second,
			MaxIdemponentCallAttempts:     2,
			StreamResponseBody:            true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			// A POST is retried once only when a reused keep-alive
			// connection turned out closed before any response byte.
			RetryIfErr: func(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
				return false, attempts < 2 && errors.Is(err, fasthttp.ErrConnectionClosed)
			},
		},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zaits_delivery_requests_total",
			Help: "Delivery HTTP requests by result: ok or the error code.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zaits_delivery_request_duration_seconds",
			Help:    "Duration of delivery HTTP requests.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	for _, m := range []prometheus.Collector{c.requests, c.duration} {
		if reg == nil {
			break
		}
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("delivery client metrics: %w", err)
		}
	}
	return c, nil
}

// AddListener records one of the process's own listening addresses
// ("host:port"): deliveries never connect to it.
func (c *Client) AddListener(addr string) { c.cfg.Listeners.Add(addr) }

// AddressRefused returns why the address guard refuses a (the client's
// allow-list and development mode applied), or "" when deliveries may
// connect to it. The gateway checks literal endpoint hosts with it.
func (c *Client) AddressRefused(a netip.Addr) string { return c.guard.refused(a) }

// Deliver makes one attempt. It never returns without a Result: failures
// are classified in Result.ErrCode.
func (c *Client) Deliver(ctx context.Context, r Request) Result {
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	timeout := c.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.SetRequestURI(r.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent(UserAgent)
	req.SetBodyRaw(r.Body)
	if len(r.Secrets) > 0 {
		signSeed(&req.Header, r.Secrets, r.Body)
		req.Header.SetBytesV("webhook-signature", standardSignatures(nil, r.Secrets, r.DeliveryID, now.Unix(), r.Body))
	}
	req.Header.Set("X-Zaits-Event", r.EventType)
	req.Header.Set("X-Zaits-Delivery", r.DeliveryID)
	req.Header.Set("webhook-id", r.DeliveryID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))

	start := time.Now()
	var res Result
	err := ctx.Err()
	if err == nil {
		err = c.hc.DoTimeout(req, resp, timeout)
	}
	if err != nil {
		res = Result{ErrCode: classify(err), Err: fmt.Errorf("POST %s: %w", redact(r.URL), err)}
	} else {
		res.Status = resp.StatusCode()
		// A 2xx counts even if the body was cut short.
		body := c.readBody(resp)
		res.Excerpt = excerpt(body, c.cfg.ExcerptBytes)
		switch {
		case res.Status < 200 || res.Status > 299:
			res.ErrCode = schemas.ErrCodeHTTPStatus
			res.Err = fmt.Errorf("POST %s: %w: %d", redact(r.URL), ErrStatus, res.Status)
			if res.Status == fasthttp.StatusTooManyRequests || res.Status == fasthttp.StatusServiceUnavailable {
				res.RetryAfter = parseRetryAfter(resp.Header.Peek("Retry-After"), time.Now())
			}
		}
	}
	res.Latency = time.Since(start)
	c.duration.Observe(res.Latency.Seconds())
	if res.ErrCode == "" {
		c.requests.WithLabelValues("ok").Inc()
	} else {
		c.requests.WithLabelValues(res.ErrCode).Inc()
	}
	return res
}

// readBody reads at most MaxResponseBytes of the streamed body and returns
// its first ExcerptBytes (plus one, to tell a cut); the connection is reused
// only when the body was read to its end.
func (c *Client) readBody(resp *fasthttp.Response) []byte {
	defer resp.CloseBodyStream() //nolint:errcheck
	keep := min(c.cfg.ExcerptBytes+utf8.UTFMax, c.cfg.MaxResponseBytes)
	s := resp.BodyStream()
	if s == nil {
		b := resp.Body()
		return append([]byte(nil), b[:min(len(b), keep)]...)
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var out []byte
	left := c.cfg.MaxResponseBytes
	for left > 0 {
		n, err := s.Read(buf[:min(len(buf), left)])
		if len(out) < keep {
			out = append(out, buf[:min(n, keep-len(out))]...)
		}
		left -= n
		if err != nil {
			return out
		}
	}
	// At the limit: a body of exactly that size ends here and the
	// connection stays reusable; a longer one is cut and its connection closed.
	s.Read(buf[:1]) //nolint:errcheck
	return out
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// excerpt keeps the first n bytes of b as valid UTF-8.
func excerpt(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
		// Drop a rune the cut split in two.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0; i++ {
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// classify maps a transport error to an ErrCode.
func classify(err error) string {
	var (
		certErr    *tls.CertificateVerificationError
		recErr     tls.RecordHeaderError
		alertErr   tls.AlertError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, ErrAddressRefused):
		return schemas.ErrCodeAddressRefused
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &alertErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr):
		return schemas.ErrCodeTLS
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, fasthttp.ErrNoFreeConns):
		return schemas.ErrCodeTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		return schemas.ErrCodeTimeout
	}
	return schemas.ErrCodeConnection
}

// redact drops the userinfo and query of a URL for error messages.
func redact(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexAny(rest+"/", "/") {
			u = u[:i+3] + rest[at+1:]
		}
	}
	return u
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v []byte, now time.Time) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 7*24*3600)) * time.Second
	}
	if t, err := fasthttp.ParseHTTPDate(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
