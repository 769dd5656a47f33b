package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// Signatures.
//
// X-Zaits-Signature is the seed's: "sha256=" + hex(HMAC-SHA256(key, body))
// where key is the secret string exactly as shown to the customer
// ("whsec_…"), used as bytes, as the seed's Node, Python and PHP snippets do.
// The seed's snippets compare the whole header with one signature, so it
// carries one: the secret the receiver has. During a rotation's overlap
// that is the previous secret (a receiver that has not switched yet keeps
// verifying), and X-Zaits-Signature-New carries the new secret's, for a
// receiver that switched (the README's rotation steps); after the overlap,
// or once the previous secret is retired, X-Zaits-Signature is the new
// secret's and X-Zaits-Signature-New is gone.
//
// webhook-signature is Standard Webhooks': one "v1," + base64(HMAC-SHA256(key,
// id "." timestamp "." body)) per signing secret, space-separated (two during
// a rotation overlap). Its key is what the official verifiers derive from the
// secret: the part after "whsec_" decoded as standard, padded base64 (secrets
// are "whsec_" + standard base64 of 32 random bytes; see endpoint.NewSecret).
// A secret that does not decode that way (an older unpadded URL-safe secret)
// is used whole as raw bytes, which is what a verifier constructed from the
// raw secret (e.g. NewWebhookRaw) expects.

// HeaderSignatureNew carries the new secret's seed signature during a
// rotation's overlap.
const HeaderSignatureNew = "X-Zaits-Signature-New"

// signSeed sets the seed signature headers for secrets (current first).
func signSeed(h *fasthttp.RequestHeader, secrets [][]byte, body []byte) {
	if len(secrets) == 1 {
		h.SetBytesV("X-Zaits-Signature", seedSignature(nil, secrets[0], body))
		return
	}
	h.SetBytesV("X-Zaits-Signature", seedSignature(nil, secrets[1], body))
	h.SetBytesV(HeaderSignatureNew, seedSignature(nil, secrets[0], body))
}

// seedSignature appends "sha256=<hex>" for body under secret to dst.
func seedSignature(dst, secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	var sum [sha256.Size]byte
	dst = append(dst, "sha256="...)
	return hex.AppendEncode(dst, m.Sum(sum[:0]))
}

// StandardKey is the Standard Webhooks HMAC key of a secret.
func StandardKey(secret []byte) []byte {
	if rest, ok := strings.CutPrefix(string(secret), "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return k
		}
	}
	return secret
}

// standardSignatures appends the webhook-signature value for the secrets to dst.
func standardSignatures(dst []byte, secrets [][]byte, id string, timestamp int64, body []byte) []byte {
	var ts [20]byte
	tsb := strconv.AppendInt(ts[:0], timestamp, 10)
	var sum [sha256.Size]byte
	for i, s := range secrets {
		m := hmac.New(sha256.New, StandardKey(s))
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write(tsb)
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, "v1,"...)
		dst = base64.StdEncoding.AppendEncode(dst, m.Sum(sum[:0]))
	}
	return dst
}
