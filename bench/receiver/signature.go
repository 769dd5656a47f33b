package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// Header names of a delivery: the seed's three and the Standard Webhooks three.
const (
	HeaderSignature    = "X-Zaits-Signature"
	HeaderEvent        = "X-Zaits-Event"
	HeaderDelivery     = "X-Zaits-Delivery"
	HeaderWebhookID    = "webhook-id"
	HeaderWebhookTime  = "webhook-timestamp"
	HeaderWebhookSigns = "webhook-signature"
)

// SeedSignature returns the seed's X-Zaits-Signature value for body:
// "sha256=" + hex(HMAC-SHA256(secret, body)), the secret's bytes used as the key.
func SeedSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// StandardKey is the default Standard Webhooks key derivation: a secret
// "whsec_<base64>" whose remainder decodes as standard base64 yields the
// decoded bytes (what the official Standard Webhooks libraries do); any other
// secret is used as raw bytes.
func StandardKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return k
		}
	}
	return []byte(secret)
}

// StandardSignature returns one Standard Webhooks signature entry,
// "v1," + base64(HMAC-SHA256(key, id "." timestamp "." body)).
func StandardSignature(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// seedMatches reports whether header (one "sha256=<hex>" or several separated
// by commas or spaces, as during a secret rotation) holds the signature of
// body under one of secrets. Comparisons are constant-time.
func seedMatches(header string, body []byte, secrets []string) bool {
	for _, s := range secrets {
		want := SeedSignature(s, body)
		for _, got := range strings.FieldsFunc(header, func(r rune) bool { return r == ',' || r == ' ' }) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return true
			}
		}
	}
	return false
}

// standardMatches reports whether header (space-separated "v1,<base64>"
// entries) holds the Standard Webhooks signature under one of keys.
func standardMatches(header, id string, timestamp int64, body []byte, keys [][]byte) bool {
	for _, k := range keys {
		want := StandardSignature(k, id, timestamp, body)
		for _, got := range strings.Fields(header) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return true
			}
		}
	}
	return false
}

// Sign sets on h the headers a delivery of body carries, signed with secret
// the way the dispatcher signs: the seed's three headers and the Standard
// Webhooks three (webhook-id is the delivery id). The bench's own load
// generators use it so the receiver does the same work for them as for the
// real system.
func Sign(h *fasthttp.RequestHeader, secret, deliveryID, eventType string, timestamp int64, body []byte) {
	h.SetContentType("application/json")
	h.Set(HeaderSignature, SeedSignature(secret, body))
	h.Set(HeaderEvent, eventType)
	h.Set(HeaderDelivery, deliveryID)
	h.Set(HeaderWebhookID, deliveryID)
	h.Set(HeaderWebhookTime, strconv.FormatInt(timestamp, 10))
	h.Set(HeaderWebhookSigns, StandardSignature(StandardKey(secret), deliveryID, timestamp, body))
}
