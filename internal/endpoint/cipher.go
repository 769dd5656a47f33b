package endpoint

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// Cipher encrypts endpoint secrets at rest with AES-256-GCM. The endpoint id
// is the additional data, so a ciphertext cannot be moved to another endpoint.
type Cipher struct {
	aead cipher.AEAD
}

// devKeySeed derives the fixed development key. Development mode only: the
// key is public, so secrets stored with it are not protected.
const devKeySeed = "zaits development mode key: not for production"

// NewCipher takes a base64-encoded 32-byte key; with an empty key and dev
// set it uses the fixed development key.
func NewCipher(keyB64 string, dev bool) (*Cipher, error) {
	var key []byte
	switch {
	case keyB64 != "":
		k, err := base64.StdEncoding.DecodeString(keyB64)
		if err != nil {
			return nil, fmt.Errorf("endpoints.encryption-key: not base64: %w", err)
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("endpoints.encryption-key: %d bytes, want 32 (generate one with `openssl rand -base64 32`)", len(k))
		}
		key = k
	case dev:
		k := sha256.Sum256([]byte(devKeySeed))
		key = k[:]
	default:
		return nil, errors.New("endpoints.encryption-key: required outside development mode (generate one with `openssl rand -base64 32`)")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead}, nil
}

// Seal encrypts plaintext for endpoint id: base64(nonce || ciphertext).
func (c *Cipher) Seal(id string, plaintext []byte) string {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(c.aead.Seal(nonce, nonce, plaintext, []byte(id)))
}

// ErrDecrypt means a stored secret could not be decrypted: a wrong key or a tampered record.
var ErrDecrypt = errors.New("cannot decrypt endpoint secret (wrong endpoints.encryption-key?)")

// Open decrypts what Seal produced for the same endpoint id.
func (c *Cipher) Open(id, sealed string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < c.aead.NonceSize() {
		return nil, ErrDecrypt
	}
	n := c.aead.NonceSize()
	out, err := c.aead.Open(nil, b[:n], b[n:], []byte(id))
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

// NewSecret returns a fresh signing secret: "whsec_" + 32 random bytes in
// standard, padded base64 (44 characters), the form the official Standard
// Webhooks verifiers decode into their HMAC key.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// NewID returns a fresh endpoint id: "we_" + 24 URL-safe characters (144 bits).
func NewID() string { return "we_" + RandomString(18) }

// RandomString returns n random bytes from the CSPRNG in unpadded URL-safe base64.
func RandomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
