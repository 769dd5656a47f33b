package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ErrAddressRefused is wrapped by a dial the address guard refused.
var ErrAddressRefused = errors.New("address refused by the delivery address guard")

// refusedNetworks are refused beyond what netip classifies (loopback,
// private, link-local, multicast, unspecified): "this network", shared
// address space (carrier-grade NAT), the limited broadcast and the cloud
// metadata addresses (already link-local / private; listed for clarity).
var refusedNetworks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("169.254.169.254/32"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
	netip.MustParsePrefix("64:ff9b:1::/48"), // NAT64 local use (RFC 8215)
}

// guard decides which addresses deliveries may connect to.
type guard struct {
	allow    []netip.Prefix
	loopback bool // development mode: loopback allowed
	resolver *net.Resolver
}

// refused returns why a is refused, or "" when it is allowed.
func (g *guard) refused(a netip.Addr) string {
	a = a.WithZone("")
	u := a.Unmap() // IPv4-mapped IPv6 is judged as the IPv4 address it maps
	for _, p := range g.allow {
		if p.Contains(a) || p.Contains(u) {
			return ""
		}
	}
	switch {
	case u.IsLoopback():
		if g.loopback {
			return ""
		}
		return "loopback"
	case u.IsUnspecified():
		return "unspecified"
	case u.IsPrivate():
		return "private"
	case u.IsLinkLocalUnicast():
		if u == netip.MustParseAddr("169.254.169.254") {
			return "cloud metadata"
		}
		return "link-local"
	case u.IsMulticast(), u.IsLinkLocalMulticast(), u.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, p := range refusedNetworks {
		if p.Contains(u) {
			return "reserved"
		}
	}
	if v4, form := embeddedIPv4(u); form != "" {
		if why := g.refused(v4); why != "" {
			return why + " (" + v4.String() + " in " + form + ")"
		}
	}
	return ""
}

// IPv6 forms that carry an IPv4 address a gateway or the host may turn
// into an IPv4 connection: NAT64's well-known prefix (RFC 6052), 6to4
// (RFC 3056) and the deprecated IPv4-compatible form. Each is judged as
// the IPv4 address it carries too. (NAT64 local-use prefixes embed it at
// a network-chosen position and are refused whole, in refusedNetworks.)
var (
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4       = netip.MustParsePrefix("2002::/16")
	v4Compatible = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address a carries and the form's name, or
// "" when a is not one of those forms.
func embeddedIPv4(a netip.Addr) (netip.Addr, string) {
	if !a.Is6() {
		return netip.Addr{}, ""
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64 64:ff9b::/96"
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4 2002::/16"
	case v4Compatible.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible ::/96"
	}
	return netip.Addr{}, ""
}

// dial resolves addr ("host:port"), refuses the forbidden addresses, and
// connects to an address that was checked: the name is never looked up again.
func (g *guard) dial(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	targets, err := g.resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var errs []error
	for _, t := range targets {
		c, err := d.DialContext(ctx, "tcp", t.String())
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

// resolve looks addr ("host:port") up and returns the addresses the guard
// allows, in the resolver's order; an error wrapping ErrAddressRefused when
// it allows none of them.
func (g *guard) resolve(ctx context.Context, addr string) ([]netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port: %w", addr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var ok []netip.AddrPort
	var why []string
	for _, ip := range ips {
		if r := g.refused(ip); r != "" {
			why = append(why, ip.String()+" is "+r)
			continue
		}
		ok = append(ok, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w: %s resolves to %v", ErrAddressRefused, host, why)
	}
	return ok, nil
}
