package endpoint

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/zaits/webhooks/internal/flagenv"
)

// Config configures the endpoint store. Every component that reads or
// writes endpoints (gateway, dispatcher) registers these flags.
type Config struct {
	// EncryptionKey is the base64 AES-256 key for secrets at rest. Required
	// unless Dev is set, which uses a fixed, public development key.
	EncryptionKey flagenv.Secret
	// RotationOverlap is how long a replaced secret keeps signing after a
	// rotation. Default 24h.
	RotationOverlap time.Duration
	// Dev is development mode (set by the caller from -dev).
	Dev bool
}

// RegisterFlags registers the endpoints.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&c.EncryptionKey, "endpoints.encryption-key", "base64 32-byte AES key encrypting endpoint secrets at rest (required unless -dev)")
	fs.DurationVar(&c.RotationOverlap, "endpoints.rotation-overlap", 24*time.Hour, "how long the previous secret keeps signing after a rotation")
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if _, err := NewCipher(string(c.EncryptionKey), c.Dev); err != nil {
		errs = append(errs, err)
	}
	if c.RotationOverlap < 0 || c.RotationOverlap > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("endpoints.rotation-overlap: must be 0..720h, got %s", c.RotationOverlap))
	}
	return errors.Join(errs...)
}
