package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/zaits/webhooks/internal/endpoint"
)

// principal is who made a request.
type principal struct {
	// AccountID is the account an API key belongs to; empty for a service token.
	AccountID string
	// Service marks an ingestion service token: it may post events for any
	// account and may not use the management API.
	Service bool
	// key names the credential (account or service name and a hash prefix):
	// the rate limiter's bucket and a safe log value.
	key string
}

// credential is one configured key: its owner and the SHA-256 of the key.
type credential struct {
	owner string
	hash  [sha256.Size]byte
}

// DevAccount is the account of the key printed in development mode.
const DevAccount = "acct_dev"

var ownerRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// parseCredentials parses "<owner>:<sha256 hex>,..." (the gateway.api-keys
// and gateway.service-tokens flags).
func parseCredentials(flag, s string) ([]credential, error) {
	var out []credential
	var errs []error
	seen := map[[sha256.Size]byte]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		owner, hexHash, ok := strings.Cut(item, ":")
		var c credential
		n, err := hex.Decode(c.hash[:], []byte(hexHash))
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: entry %d is not <owner>:<sha256 hex>", flag, len(out)+len(errs)+1))
		case !ownerRE.MatchString(owner):
			errs = append(errs, fmt.Errorf("%s: owner %q must be 1-64 letters, digits, '_', '.' or '-'", flag, owner))
		case err != nil || n != sha256.Size || len(hexHash) != 2*sha256.Size:
			errs = append(errs, fmt.Errorf("%s: the hash of %q is not 64 hex digits (configure the SHA-256 of the key, never the key)", flag, owner))
		case seen[c.hash]:
			errs = append(errs, fmt.Errorf("%s: the hash of %q is configured twice", flag, owner))
		default:
			seen[c.hash] = true
			c.owner = owner
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

// keyring maps the SHA-256 of every configured key to its principal. A
// lookup is one hash and one map access, whatever the number of keys; the
// map is keyed by the digest, never the key, so its timing tells nothing
// usable about a key. A digest configured both as an API key and as a
// service token is the API key.
type keyring map[[sha256.Size]byte]principal

func newKeyring(accounts, services []credential) keyring {
	k := make(keyring, len(accounts)+len(services))
	for _, s := range services {
		k[s.hash] = principal{Service: true, key: "service:" + s.owner + ":" + hex.EncodeToString(s.hash[:4])}
	}
	for _, a := range accounts {
		k[a.hash] = principal{AccountID: a.owner, key: a.owner + ":" + hex.EncodeToString(a.hash[:4])}
	}
	return k
}

// lookup resolves a presented token to a principal.
func (k keyring) lookup(token []byte) (principal, bool) {
	p, ok := k[sha256.Sum256(token)]
	return p, ok
}

// MintKey returns a fresh API key (or service token) and its configuration
// entry "<owner>:<sha256 hex>". The key is shown once; only the entry is kept.
func MintKey(owner string, service bool) (key, entry string, err error) {
	if !ownerRE.MatchString(owner) {
		return "", "", fmt.Errorf("%q: an account or service name is 1-64 letters, digits, '_', '.' or '-'", owner)
	}
	prefix := "zk_"
	if service {
		prefix = "zst_"
	}
	key = prefix + endpoint.RandomString(32)
	sum := sha256.Sum256([]byte(key))
	return key, owner + ":" + hex.EncodeToString(sum[:]), nil
}

var bearer = []byte("Bearer ")

// fromHeader resolves an Authorization header value "Bearer <token>".
func (k keyring) fromHeader(h []byte) (principal, bool) {
	if len(h) <= len(bearer) || !bytes.EqualFold(h[:len(bearer)], bearer) {
		return principal{}, false
	}
	return k.lookup(bytes.TrimSpace(h[len(bearer):]))
}

// authenticate resolves the request's "Authorization: Bearer <token>" to
// an account API key or an ingestion service token. A client address over
// its failed-authentication limit is refused without its key being
// looked at. It writes nothing; callers answer with unauthorized (or 403)
// themselves when ok is false.
func (g *Gateway) authenticate(ctx *fasthttp.RequestCtx) (p principal, ok bool) {
	if _, blocked := g.authFailures.blocked(ctx.RemoteIP()); blocked {
		return principal{}, false
	}
	return g.keys.fromHeader(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
}

// unauthorized answers a request whose key authenticate refused: 401, or
// 429 with Retry-After while the client address is over its
// failed-authentication limit (a failure is counted either way). ingest
// selects the event routes' message and counter.
func (g *Gateway) unauthorized(ctx *fasthttp.RequestCtx, ingest bool) {
	wait, ok := g.authFailures.failed(ctx.RemoteIP())
	if !ok {
		g.authRefused.WithLabelValues("429").Inc()
		if ingest {
			g.ingest.counts.rejected.WithLabelValues("http", "unauthorized").Inc()
		}
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(wait))
		writeError(ctx, fasthttp.StatusTooManyRequests, "too_many_failed_authentications",
			fmt.Sprintf("too many failed authentications from this address; retry after %d s", wait))
		return
	}
	g.authRefused.WithLabelValues("401").Inc()
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="zaits"`)
	if ingest {
		g.ingest.counts.rejected.WithLabelValues("http", "unauthorized").Inc()
		writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a valid API key or service token is required: Authorization: Bearer <key>")
		return
	}
	writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a valid API key is required: Authorization: Bearer <api key>")
}

// account wraps a management handler: it requires an account API key
// (401 otherwise, or 429 over the address's failed-authentication limit;
// 403 for a service token), applies the key's rate limit
// (429 with Retry-After), passes the account on, and counts the answer
// by route and status (zaits_gateway_api_requests_total).
func (g *Gateway) account(route string, h func(ctx *fasthttp.RequestCtx, account string)) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		defer func() {
			g.apiRequests.WithLabelValues(route, strconv.Itoa(ctx.Response.StatusCode())).Inc()
			g.apiSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		p, ok := g.authenticate(ctx)
		if !ok {
			g.unauthorized(ctx, false)
			return
		}
		if p.Service {
			writeError(ctx, fasthttp.StatusForbidden, "forbidden", "service tokens may only post events; the management API needs an account API key")
			return
		}
		if wait, ok := g.limiter.allow(p.key); !ok {
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(wait))
			writeError(ctx, fasthttp.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many requests for this API key; retry after %d s", wait))
			return
		}
		h(ctx, p.AccountID)
	}
}
