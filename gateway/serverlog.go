package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
)

// serverLog is fasthttp's logger. fasthttp puts request bytes in some of
// its messages (a header value it cannot parse, the request target, with
// SecureErrorLogMessage off the whole header buffer): every quoted part
// that is not a host:port is replaced, and so is anything shaped like a
// credential, so that no key, token or header value reaches the log.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Printf(format string, args ...any) {
	l.log.Log(context.Background(), slog.LevelWarn, redactRequest(fmt.Sprintf(format, args...)), "component", "http server")
}

var (
	// quoted matches a Go-quoted string (fasthttp's %q).
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// credentials are what a key, a token or a signing secret looks like.
	credentials = regexp.MustCompile(`(?i)\b(bearer|basic)\s+\S+|\b(zk|zst|whsec)_[A-Za-z0-9_+/=-]+`)
)

// redactRequest removes from a server message whatever a client sent.
func redactRequest(msg string) string {
	if i := strings.Index(msg, "contents:"); i >= 0 {
		msg = msg[:i] + "contents: [redacted]"
	}
	msg = quoted.ReplaceAllStringFunc(msg, func(q string) string {
		if _, err := netip.ParseAddrPort(strings.Trim(q, `"`)); err == nil {
			return q // a connection's address
		}
		return `"[redacted]"`
	})
	return credentials.ReplaceAllString(msg, "[redacted]")
}
