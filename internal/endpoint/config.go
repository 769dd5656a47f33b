package endpoint

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/zaits/webhooks/internal/flagenv"
)

// Config configures the endpoint store. Every component that reads or
// writes endpoints (gateway, router, dispatcher) registers these flags. A
// zero field means its documented default.
type Config struct {
	// EncryptionKey is the base64 AES-256 key for secrets at rest. Required
	// unless Dev is set, which uses a fixed, public development key.
	EncryptionKey flagenv.Secret
	// RotationOverlap is how long a replaced secret keeps signing after a
	// rotation. Default 24h; negative: none (the old secret stops at once).
	RotationOverlap time.Duration
	// Dev is development mode (set by the caller from -dev).
	Dev bool
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	flagenv.Default(&c.RotationOverlap, 24*time.Hour)
	return c
}

// RegisterFlags registers the endpoints.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.withDefaults()
	fs.Var(&c.EncryptionKey, "endpoints.encryption-key", "base64 32-byte AES key encrypting endpoint secrets at rest (required unless -dev)")
	flagenv.OffDuration(fs, &c.RotationOverlap, "endpoints.rotation-overlap", d.RotationOverlap, "how long the previous secret keeps signing after a rotation (0: none)")
}

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error {
	d := c.withDefaults()
	c = &d
	var errs []error
	if _, err := NewCipher(string(c.EncryptionKey), c.Dev); err != nil {
		errs = append(errs, err)
	}
	if c.RotationOverlap > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("endpoints.rotation-overlap: must be at most 720h, got %s", c.RotationOverlap))
	}
	return errors.Join(errs...)
}
