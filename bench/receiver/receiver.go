// Package receiver is the bench's webhook endpoint: a fasthttp server on a
// loopback port that verifies every delivery the way a careful customer
// would and counts what went wrong.
//
// Each endpoint is registered with its secrets and served at /hook/<id>.
// For every request the receiver checks the seed signature
// (X-Zaits-Signature), the Standard Webhooks signature and timestamp, that
// X-Zaits-Delivery is the deterministic delivery id of the body's event, and
// then records the arrival of the body's data.seq, the per-endpoint sequence
// number the bench puts into every event. From those arrivals and from what
// the producer side says was accepted (Expect) it reports signature failures,
// order violations, duplicates, losses and the accepted→receipt latency.
//
// An endpoint can be told to answer with an error status or to hang
// (SetBehaviour), for the failures scenario.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/schemas"
)

// PathPrefix is the path under which endpoint <id> is served: /hook/<id>.
const PathPrefix = "/hook/"

// MaxSeq bounds data.seq: larger values are malformed (arrivals are kept in
// a slice indexed by seq).
const MaxSeq = 1 << 26

// Config configures a Receiver. The zero value is the documented default.
type Config struct {
	// Listen is the address to listen on; it must be a loopback address.
	// Default "127.0.0.1:0" (a free port).
	Listen string
	// StandardKey derives the Standard Webhooks HMAC key from an endpoint
	// secret. Default StandardKey: "whsec_<base64>" decodes to its bytes,
	// any other secret is used raw.
	StandardKey func(secret string) []byte
	// StandardOptional accepts deliveries without the Standard Webhooks
	// headers (present ones are still verified). Default false: the three
	// headers are required.
	StandardOptional bool
	// TimestampTolerance is how far webhook-timestamp may be from the
	// receiver's clock. Default 5 minutes (the Standard Webhooks default).
	TimestampTolerance time.Duration
	// HangLimit bounds how long a hanging endpoint holds a request before it
	// answers 504. Default 30 s (beyond the dispatcher's 10 s timeout).
	HangLimit time.Duration
}

// Behaviour is how an endpoint answers a verified delivery. The zero value
// answers 200 at once.
type Behaviour struct {
	// Status is the response status; 0 means 200.
	Status int
	// Hang holds the request until HangLimit passes or the receiver closes.
	Hang bool
	// Hold keeps each request open until the endpoint's behaviour is set
	// again, then answers it as the new behaviour says (arrival time: then):
	// a receiver that stopped answering and came back (backlog scenario).
	// A request still held when the receiver closes is answered 503.
	Hold bool
}

// Receiver is the bench's webhook endpoint server. Its methods are safe for
// concurrent use.
type Receiver struct {
	cfg    Config
	srv    *fasthttp.Server
	ln     net.Listener
	closed chan struct{}
	once   sync.Once

	mu        sync.RWMutex
	endpoints map[string]*endpoint

	requests  atomic.Int64 // every request
	delivered atomic.Int64 // verified, answered 2xx, first time
	sigFails  atomic.Int64
	malformed atomic.Int64
	expected  atomic.Int64 // Expect calls
	matched   atomic.Int64 // expected sequences that arrived
}

// endpoint is the receiver's state for one registered endpoint.
type endpoint struct {
	id      string // the system's id
	secrets []string
	keys    [][]byte

	mu         sync.Mutex
	behaviour  Behaviour
	changed    chan struct{} // closed and replaced by SetBehaviour (wakes held requests)
	attempts   int64         // verified requests, whatever the answer
	failed     int64         // verified requests answered non-2xx
	sigFails   int64
	malformed  int64
	dups       int64 // the same delivery id answered 2xx before
	otherID    int64 // a seq answered 2xx before under another delivery id
	order      int64
	maxSeq     int64
	deliveries map[string]struct{}
	arrived    []int64 // seq -> unix nanos of the first 2xx arrival; 0 = none
	accepted   []int64 // seq -> unix nanos of acceptance; 0 = not expected
}

// New returns a receiver that is not listening yet; Start makes it listen.
func New(cfg Config) *Receiver {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.StandardKey == nil {
		cfg.StandardKey = StandardKey
	}
	if cfg.TimestampTolerance == 0 {
		cfg.TimestampTolerance = 5 * time.Minute
	}
	if cfg.HangLimit == 0 {
		cfg.HangLimit = 30 * time.Second
	}
	r := &Receiver{cfg: cfg, closed: make(chan struct{}), endpoints: map[string]*endpoint{}}
	r.srv = &fasthttp.Server{
		Handler:            r.handle,
		Name:               "zaits-bench-receiver",
		ReadTimeout:        60 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: 2 * schemas.MaxEventDataBytes,
		Concurrency:        1 << 16,
		NoDefaultDate:      true,
	}
	return r
}

// Start listens on the configured loopback address and serves in the background.
func (r *Receiver) Start() error {
	host, _, err := net.SplitHostPort(r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("receiver listen address %q: %w", r.cfg.Listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("receiver listen address %q: only loopback addresses may receive bench traffic", r.cfg.Listen)
	}
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("receiver listen: %w", err)
	}
	r.ln = ln
	go func() { _ = r.srv.Serve(ln) }()
	return nil
}

// Addr is the listening address (host:port).
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// URL is the delivery URL of the endpoint named name.
func (r *Receiver) URL(name string) string { return "http://" + r.Addr() + PathPrefix + name }

// Close releases hanging requests and stops the server.
func (r *Receiver) Close(ctx context.Context) error {
	r.once.Do(func() { close(r.closed) })
	if r.ln == nil {
		return nil
	}
	return r.srv.ShutdownWithContext(ctx)
}

// Endpoint is an endpoint the receiver serves.
type Endpoint struct {
	// Name is the URL path segment: the endpoint is served at /hook/<Name>.
	Name string
	// ID is the system's endpoint id, from which the delivery id is derived
	// (schemas.DeliveryID). Default Name. The system assigns ids when an
	// endpoint is created, after its URL was chosen, hence the two fields.
	ID string
	// Secrets are the secrets deliveries may be signed with (two during a rotation).
	Secrets []string
}

// Register adds an endpoint, or replaces the ID and secrets of one with the same Name.
func (r *Receiver) Register(ep Endpoint) {
	if ep.ID == "" {
		ep.ID = ep.Name
	}
	keys := make([][]byte, len(ep.Secrets))
	for i, s := range ep.Secrets {
		keys[i] = r.cfg.StandardKey(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.endpoints[ep.Name]; ok {
		e.mu.Lock()
		e.id, e.secrets, e.keys = ep.ID, ep.Secrets, keys
		e.mu.Unlock()
		return
	}
	r.endpoints[ep.Name] = &endpoint{id: ep.ID, secrets: ep.Secrets, keys: keys, maxSeq: -1, deliveries: map[string]struct{}{}, changed: make(chan struct{})}
}

// SetBehaviour sets how the endpoint named name answers from now on.
func (r *Receiver) SetBehaviour(name string, b Behaviour) error {
	e := r.endpoint(name)
	if e == nil {
		return fmt.Errorf("%w: %s", ErrUnknownEndpoint, name)
	}
	e.mu.Lock()
	e.behaviour = b
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	return nil
}

// ErrUnknownEndpoint is returned for an endpoint id that was never registered.
var ErrUnknownEndpoint = errors.New("endpoint not registered with the receiver")

// Expect records that the system accepted the event with sequence seq for
// the endpoint named name at acceptedAt: it must arrive exactly once, and its
// latency is measured from acceptedAt. A zero acceptedAt expects the event
// without measuring its latency (events published during a warm-up).
func (r *Receiver) Expect(name string, seq int64, acceptedAt time.Time) error {
	e := r.endpoint(name)
	if e == nil {
		return fmt.Errorf("%w: %s", ErrUnknownEndpoint, name)
	}
	if seq < 0 || seq >= MaxSeq {
		return fmt.Errorf("sequence %d out of range [0, %d)", seq, MaxSeq)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accepted = grow(e.accepted, seq)
	if e.accepted[seq] != 0 {
		return nil
	}
	e.accepted[seq] = unmeasured
	if !acceptedAt.IsZero() {
		e.accepted[seq] = acceptedAt.UnixNano()
	}
	r.expected.Add(1)
	if e.arrived = grow(e.arrived, seq); e.arrived[seq] != 0 {
		r.matched.Add(1)
	}
	return nil
}

// Delivered is the number of distinct deliveries verified and answered 2xx.
func (r *Receiver) Delivered() int64 { return r.delivered.Load() }

// Requests is the number of requests received, whatever their fate.
func (r *Receiver) Requests() int64 { return r.requests.Load() }

// Errors is the number of requests that failed verification.
func (r *Receiver) Errors() int64 { return r.sigFails.Load() + r.malformed.Load() }

// Outstanding is the number of expected events that have not arrived yet.
func (r *Receiver) Outstanding() int64 { return r.expected.Load() - r.matched.Load() }

func (r *Receiver) endpoint(name string) *endpoint {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.endpoints[name]
}

// unmeasured marks an expected event whose latency is not measured.
const unmeasured = -1

// grow extends s so that s[i] exists.
func grow(s []int64, i int64) []int64 {
	if int64(len(s)) > i {
		return s
	}
	n := max(2*int64(len(s)), i+1, 64)
	out := make([]int64, n)
	copy(out, s)
	return out
}

// payload is the part of the seed payload the receiver checks.
type payload struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Seq *int64 `json:"seq"`
	} `json:"data"`
}

func (r *Receiver) handle(ctx *fasthttp.RequestCtx) {
	now := time.Now()
	r.requests.Add(1)
	path := ctx.Path()
	if !ctx.IsPost() || len(path) <= len(PathPrefix) || string(path[:len(PathPrefix)]) != PathPrefix {
		r.malformed.Add(1)
		ctx.Error("not a hook path", fasthttp.StatusNotFound)
		return
	}
	e := r.endpoint(string(path[len(PathPrefix):]))
	if e == nil {
		r.malformed.Add(1)
		ctx.Error("unknown endpoint", fasthttp.StatusNotFound)
		return
	}
	body := ctx.PostBody()
	e.mu.Lock()
	id, secrets, keys := e.id, e.secrets, e.keys
	e.mu.Unlock()
	if !r.verify(&ctx.Request.Header, body, secrets, keys, now) {
		r.sigFails.Add(1)
		e.mu.Lock()
		e.sigFails++
		e.mu.Unlock()
		ctx.Error("invalid signature", fasthttp.StatusUnauthorized)
		return
	}
	var p payload
	deliveryID := string(ctx.Request.Header.Peek(HeaderDelivery))
	if err := json.Unmarshal(body, &p); err != nil || p.Data.Seq == nil || *p.Data.Seq < 0 || *p.Data.Seq >= MaxSeq ||
		deliveryID != schemas.DeliveryID(p.ID, id) || string(ctx.Request.Header.Peek(HeaderEvent)) != p.Type {
		r.malformed.Add(1)
		e.mu.Lock()
		e.malformed++
		e.mu.Unlock()
		ctx.Error("malformed delivery", fasthttp.StatusBadRequest)
		return
	}
	seq := *p.Data.Seq

	e.mu.Lock()
	e.attempts++
	b := e.behaviour
	for b.Hold {
		changed := e.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-r.closed:
			e.mu.Lock()
			e.failed++
			e.mu.Unlock()
			ctx.Error("receiver closed", fasthttp.StatusServiceUnavailable)
			return
		}
		now = time.Now()
		e.mu.Lock()
		b = e.behaviour
	}
	if b.Hang || (b.Status != 0 && (b.Status < 200 || b.Status > 299)) {
		e.failed++
		e.mu.Unlock()
		r.misbehave(ctx, b)
		return
	}
	if _, dup := e.deliveries[deliveryID]; dup {
		e.dups++
		e.mu.Unlock()
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	}
	e.deliveries[deliveryID] = struct{}{}
	if e.arrived = grow(e.arrived, seq); e.arrived[seq] != 0 {
		// The same event again under another delivery id: a duplicate the
		// customer cannot recognise (the system gave the event a new id).
		e.otherID++
		e.mu.Unlock()
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	}
	if seq < e.maxSeq {
		e.order++
	} else {
		e.maxSeq = seq
	}
	e.arrived[seq] = now.UnixNano()
	if e.accepted = grow(e.accepted, seq); e.accepted[seq] != 0 {
		r.matched.Add(1)
	}
	e.mu.Unlock()
	r.delivered.Add(1)
	if b.Status != 0 {
		ctx.SetStatusCode(b.Status)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
}

// misbehave answers as b says: hang until the limit or Close, or the status.
func (r *Receiver) misbehave(ctx *fasthttp.RequestCtx, b Behaviour) {
	if b.Hang {
		t := time.NewTimer(r.cfg.HangLimit)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.closed:
		}
		ctx.Error("hung", fasthttp.StatusGatewayTimeout)
		return
	}
	ctx.Error("told to fail", b.Status)
}

// verify checks the seed signature and the Standard Webhooks headers.
func (r *Receiver) verify(h *fasthttp.RequestHeader, body []byte, secrets []string, keys [][]byte, now time.Time) bool {
	if !seedMatches(string(h.Peek(HeaderSignature)), body, secrets) {
		return false
	}
	id, ts, sig := h.Peek(HeaderWebhookID), h.Peek(HeaderWebhookTime), h.Peek(HeaderWebhookSigns)
	if len(id) == 0 && len(ts) == 0 && len(sig) == 0 {
		return r.cfg.StandardOptional
	}
	t, err := strconv.ParseInt(string(ts), 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(t, 0)); d > r.cfg.TimestampTolerance || d < -r.cfg.TimestampTolerance {
		return false
	}
	return standardMatches(string(sig), string(id), t, body, keys)
}
