package dispatcher

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Egress through an HTTP CONNECT proxy (ClientConfig.Proxy, -delivery.proxy),
// so that every delivery leaves from the proxy's fixed addresses, which
// customers can allow-list.
//
// The address guard still decides where a delivery may go: the dispatcher
// resolves the endpoint's host itself, refuses it unless an allowed address
// is found (exactly as without a proxy), and asks the proxy for a tunnel to
// that checked IP address (CONNECT 203.0.113.7:443), never to the name. So
// neither the proxy's own resolver nor a DNS answer that changes between
// the check and the connection (DNS rebinding) can lead a delivery to an
// internal address through the proxy. TLS runs inside the tunnel with the
// endpoint's host name (SNI and certificate verification are unchanged). The
// proxy's own address is configuration and is not subject to the guard.

// ErrProxy is wrapped by a dial the proxy refused or failed.
var ErrProxy = errors.New("egress proxy")

// proxyFlag is the flag.Value of -delivery.proxy; it shows the URL with its
// password redacted (it is logged with the configuration).
type proxyFlag struct{ p *string }

func (f proxyFlag) String() string {
	if f.p == nil || *f.p == "" {
		return ""
	}
	if u, err := url.Parse(*f.p); err == nil {
		return u.Redacted()
	}
	return "[unparsable]"
}

func (f proxyFlag) Set(s string) error {
	if _, err := parseProxy(s); err != nil {
		return err
	}
	*f.p = s
	return nil
}

// proxyDialer dials through the proxy to addresses the guard checked.
type proxyDialer struct {
	guard *guard
	addr  string // the proxy's host:port
	auth  string // the Proxy-Authorization value, or ""
	name  string // the proxy's URL without its password, for errors
}

// parseProxy checks a proxy URL: http://[user:password@]host:port.
func parseProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("delivery.proxy: %w", err)
	}
	if u.Scheme != "http" || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("delivery.proxy: %q must be an HTTP CONNECT proxy URL such as http://proxy.internal:4750 (scheme http, a host and a port, no path)", u.Redacted())
	}
	return u, nil
}

func newProxyDialer(s string, g *guard) (*proxyDialer, error) {
	u, err := parseProxy(s)
	if err != nil {
		return nil, err
	}
	p := &proxyDialer{guard: g, addr: u.Host, name: u.Redacted()}
	if u.User != nil {
		pass, _ := u.User.Password()
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	return p, nil
}

// dial is the client's dial function with a proxy: the guard resolves and
// checks addr, then each allowed address is tried through a tunnel.
func (p *proxyDialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	targets, err := p.guard.resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, t := range targets {
		c, err := p.tunnel(ctx, t.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// tunnel connects to the proxy and asks it for a tunnel to target (ip:port).
func (p *proxyDialer) tunnel(ctx context.Context, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrProxy, p.name, err)
	}
	if dl, ok := ctx.Deadline(); ok { // the dial timeout bounds the CONNECT exchange too
		c.SetDeadline(dl) //nolint:errcheck
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if p.auth != "" {
		req += "Proxy-Authorization: " + p.auth + "\r\n"
	}
	req += "User-Agent: " + UserAgent + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w %s: CONNECT %s: %w", ErrProxy, p.name, target, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w %s: CONNECT %s: %w", ErrProxy, p.name, target, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		c.Close()
		return nil, fmt.Errorf("%w %s: CONNECT %s answered %s", ErrProxy, p.name, target, resp.Status)
	}
	c.SetDeadline(time.Time{}) //nolint:errcheck
	if br.Buffered() > 0 {
		// Bytes of the tunnel that came with the proxy's answer.
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// bufferedConn reads what the proxy's answer left in the buffer first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
