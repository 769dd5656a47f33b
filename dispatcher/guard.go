package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// ErrAddressRefused is wrapped by a dial the address guard refused.
var ErrAddressRefused = errors.New("address refused by the delivery address guard")

// specialBlock is one entry of the IANA IPv4 and IPv6 Special-Purpose
// Address Registries: its block, its name and whether the registry marks
// it globally reachable ("True"; "False" and "N/A" are not).
type specialBlock struct {
	prefix netip.Prefix
	name   string
	global bool
}

// specialBlocks are the registries' entries (iana-ipv4-special-registry,
// iana-ipv6-special-registry, as of 2025), most specific first, so that the
// first block containing an address is the entry that applies to it: the
// globally reachable anycast addresses inside 192.0.0.0/24 and 2001::/23
// are allowed, the rest of those blocks is not. The deprecated 6to4
// (2002::/16, its relay 192.88.99.0/24), Teredo and ORCHID blocks are "N/A"
// in the registries and refused.
var specialBlocks = func() []specialBlock {
	entries := []struct {
		block, name string
		global      bool
	}{
		{"0.0.0.0/8", `"this network"`, false},
		{"0.0.0.0/32", `"this host on this network"`, false},
		{"10.0.0.0/8", "private-use", false},
		{"100.64.0.0/10", "shared address space", false},
		{"127.0.0.0/8", "loopback", false},
		{"169.254.0.0/16", "link local", false},
		{"172.16.0.0/12", "private-use", false},
		{"192.0.0.0/24", "IETF protocol assignments", false},
		{"192.0.0.0/29", "IPv4 service continuity prefix", false},
		{"192.0.0.8/32", "IPv4 dummy address", false},
		{"192.0.0.9/32", "port control protocol anycast", true},
		{"192.0.0.10/32", "TURN anycast", true},
		{"192.0.0.170/32", "NAT64/DNS64 discovery", false},
		{"192.0.0.171/32", "NAT64/DNS64 discovery", false},
		{"192.0.2.0/24", "documentation (TEST-NET-1)", false},
		{"192.31.196.0/24", "AS112-v4", true},
		{"192.52.193.0/24", "AMT", true},
		{"192.88.99.0/24", "deprecated 6to4 relay anycast", false},
		{"192.168.0.0/16", "private-use", false},
		{"192.175.48.0/24", "direct delegation AS112 service", true},
		{"198.18.0.0/15", "benchmarking", false},
		{"198.51.100.0/24", "documentation (TEST-NET-2)", false},
		{"203.0.113.0/24", "documentation (TEST-NET-3)", false},
		{"240.0.0.0/4", "reserved", false},
		{"255.255.255.255/32", "limited broadcast", false},

		{"::1/128", "loopback", false},
		{"::/128", "unspecified", false},
		{"::ffff:0:0/96", "IPv4-mapped", false},
		{"64:ff9b::/96", "IPv4-IPv6 translation", true},
		{"64:ff9b:1::/48", "local-use IPv4-IPv6 translation", false},
		{"100::/64", "discard-only", false},
		{"100:0:0:1::/64", "dummy IPv6 prefix", false},
		{"2001::/23", "IETF protocol assignments", false},
		{"2001::/32", "Teredo", false},
		{"2001:1::1/128", "port control protocol anycast", true},
		{"2001:1::2/128", "TURN anycast", true},
		{"2001:1::3/128", "DNS-SD service registration protocol anycast", true},
		{"2001:2::/48", "benchmarking", false},
		{"2001:3::/32", "AMT", true},
		{"2001:4:112::/48", "AS112-v6", true},
		{"2001:10::/28", "deprecated ORCHID", false},
		{"2001:20::/28", "ORCHIDv2", true},
		{"2001:30::/28", "drone remote ID entity tags", true},
		{"2001:db8::/32", "documentation", false},
		{"2002::/16", "6to4", false},
		{"2620:4f:8000::/48", "direct delegation AS112 service", true},
		{"3fff::/20", "documentation", false},
		{"5f00::/16", "segment routing SIDs", false},
		{"fc00::/7", "unique-local", false},
		{"fe80::/10", "link-local unicast", false},
	}
	out := make([]specialBlock, len(entries))
	for i, e := range entries {
		out[i] = specialBlock{netip.MustParsePrefix(e.block), e.name, e.global}
	}
	// Most specific first (stable: equal lengths keep the registry order).
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].prefix.Bits() > out[j-1].prefix.Bits(); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}()

var (
	// Cloud metadata services (also link-local / unique-local; named for clarity).
	metadataV4 = netip.MustParseAddr("169.254.169.254")
	metadataV6 = netip.MustParseAddr("fd00:ec2::254")
	// IPv6 forms that carry an IPv4 address a gateway or the host may turn
	// into an IPv4 connection: NAT64's well-known prefix (RFC 6052) and the
	// deprecated IPv4-compatible form. NAT64 is judged by the address it
	// carries; an IPv4-compatible address is refused whatever it carries.
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	v4Compatible = netip.MustParsePrefix("::/96")
	// IPv6 global unicast: everything else is reserved by the IETF or has
	// its own registry entry.
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
)

// classifyAddr returns why a is not a globally reachable unicast address, or
// "" when it is. It knows nothing of allow-lists, development mode or this
// host (see guard.refused).
func classifyAddr(a netip.Addr) string {
	a = a.WithZone("")
	if a.Is4In6() {
		u := a.Unmap()
		if why := classifyAddr(u); why != "" {
			return why
		}
		return "IPv4-mapped (give " + u.String() + " itself)"
	}
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a == metadataV4 || a == metadataV6:
		return "cloud metadata"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, b := range specialBlocks {
		if !b.prefix.Contains(a) {
			continue
		}
		if !b.global {
			return "reserved (" + b.name + ", " + b.prefix.String() + ")"
		}
		if nat64.Contains(a) {
			v4 := netip.AddrFrom4([4]byte(a.AsSlice()[12:16]))
			if why := classifyAddr(v4); why != "" {
				return why + " (" + v4.String() + " in NAT64 64:ff9b::/96)"
			}
		}
		return ""
	}
	if a.Is6() && v4Compatible.Contains(a) {
		return "reserved (deprecated IPv4-compatible " + netip.AddrFrom4([4]byte(a.AsSlice()[12:16])).String() + " in ::/96)"
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return "reserved (outside IPv6 global unicast 2000::/3)"
	}
	return ""
}

// ClassifyAddress returns why deliveries never connect to a (not globally
// reachable: loopback, private, link-local, multicast, reserved, …), or ""
// when they may; without an allow-list, development mode or this host's
// own addresses (Client.AddressRefused applies those).
func ClassifyAddress(a netip.Addr) string { return classifyAddr(a) }

// guard decides which addresses deliveries may connect to. The zero value
// refuses everything that is not globally reachable and this host's own
// addresses.
type guard struct {
	allow    []netip.Prefix
	loopback bool // development mode: loopback allowed
	resolver *net.Resolver
	// self are the process's own listening addresses: never dialled, even
	// when allow-listed. Nil: none known.
	self *Listeners

	mu       sync.Mutex
	local    map[netip.Addr]bool // this host's interface addresses
	localAt  time.Time
	localErr error
}

// localRefresh is how long the host's interface addresses are cached.
const localRefresh = 10 * time.Second

// refused returns why a is refused, or "" when it is allowed: allow-listed
// networks are allowed; then, in development mode, loopback itself (not
// the IPv6 forms that carry 127.0.0.1); everything classifyAddr refuses; and
// this host's own interface addresses.
func (g *guard) refused(a netip.Addr) string {
	a = a.WithZone("")
	u := a.Unmap()
	var carried netip.Addr // the IPv4 address a NAT64 address carries
	if nat64.Contains(a) {
		carried = netip.AddrFrom4([4]byte(a.AsSlice()[12:16]))
	}
	for _, p := range g.allow {
		if p.Contains(a) || p.Contains(u) || carried.IsValid() && p.Contains(carried) {
			return ""
		}
	}
	if u.IsLoopback() && g.loopback {
		return ""
	}
	if why := classifyAddr(a); why != "" {
		return why
	}
	if g.isLocal(u) {
		return "this host's own address"
	}
	return ""
}

// isLocal reports whether a is one of this host's interface addresses.
func (g *guard) isLocal(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.local == nil || time.Since(g.localAt) > localRefresh {
		g.local, g.localErr = interfaceAddrs()
		g.localAt = time.Now()
	}
	return g.local[a]
}

// interfaceAddrs returns this host's interface addresses.
func interfaceAddrs() (map[netip.Addr]bool, error) {
	addrs, err := net.InterfaceAddrs()
	out := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out, err
}

// dial resolves addr ("host:port"), refuses the forbidden addresses, and
// connects to an address that was checked: the name is never looked up again.
func (g *guard) dial(addr string, timeout time.Duration) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip} // a literal is judged as written
	} else {
		ips, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		for i := range ips {
			ips[i] = ips[i].Unmap() // a resolver's 16-byte IPv4 is IPv4
		}
	}
	var ok []netip.Addr
	var why []string
	for _, ip := range ips {
		if r := g.refused(ip); r != "" {
			why = append(why, ip.String()+" is "+r)
			continue
		}
		if g.self.contains(netip.AddrPortFrom(ip.Unmap(), uint16(port)), g.isLocal) {
			why = append(why, netip.AddrPortFrom(ip, uint16(port)).String()+" is this process's own listening address")
			continue
		}
		ok = append(ok, ip)
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w: %s resolves to %v", ErrAddressRefused, host, why)
	}
	var d net.Dialer
	var errs []error
	for _, ip := range ok {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
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

// Listeners is the set of addresses this process serves on (the gateway's
// API, every component's ops port): deliveries never connect to them, even
// where loopback is allowed, so that an endpoint URL cannot read the
// process's own metrics, profiles or API. Safe for concurrent use; a nil
// *Listeners is empty.
type Listeners struct {
	mu    sync.RWMutex
	exact map[netip.AddrPort]bool
	// ports are listened on every local address (":8080", "0.0.0.0:8080",
	// or a host name).
	ports map[uint16]bool
}

// NewListeners returns a set holding addrs ("host:port"; see Add).
func NewListeners(addrs ...string) *Listeners {
	l := &Listeners{exact: map[netip.AddrPort]bool{}, ports: map[uint16]bool{}}
	for _, a := range addrs {
		l.Add(a)
	}
	return l
}

// Add records a listening address "host:port". An unspecified or empty
// host, or a host name, stands for every local address with that port.
// Malformed addresses are ignored.
func (l *Listeners) Add(addr string) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		ip = ip.WithZone("").Unmap()
		l.exact[netip.AddrPortFrom(ip, uint16(port))] = true
		return
	}
	l.ports[uint16(port)] = true
}

// contains reports whether a connection to ap would reach one of the
// listeners; isLocal tells this host's interface addresses.
func (l *Listeners) contains(ap netip.AddrPort, isLocal func(netip.Addr) bool) bool {
	if l == nil {
		return false
	}
	l.mu.RLock()
	exact, anyAddr := l.exact[ap], l.ports[ap.Port()]
	l.mu.RUnlock()
	if exact {
		return true
	}
	a := ap.Addr()
	return anyAddr && (a.IsLoopback() || a.IsUnspecified() || isLocal(a))
}
