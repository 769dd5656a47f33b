package dispatcher

import (
	"net"
	"net/netip"
	"testing"
)

func TestGuardClassifiesAddresses(t *testing.T) {
	g := &guard{}
	allowing := &guard{allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f := func(g *guard, addr, want string) {
		t.Helper()
		if got := g.refused(netip.MustParseAddr(addr)); got != want {
			t.Errorf("refused(%s) = %q, want %q", addr, got, want)
		}
	}
	f(g, "127.0.0.1", "loopback")
	f(g, "127.5.5.5", "loopback")
	f(g, "::1", "loopback")
	f(g, "::ffff:127.0.0.1", "loopback")
	f(g, "10.0.0.1", "private")
	f(g, "172.16.3.4", "private")
	f(g, "192.168.1.1", "private")
	f(g, "::ffff:192.168.1.1", "private")
	f(g, "fc00::1", "private")
	f(g, "fd00:ec2::254", "cloud metadata")
	f(g, "169.254.169.254", "cloud metadata")
	f(g, "::ffff:169.254.169.254", "cloud metadata")
	f(g, "169.254.1.1", "link-local")
	f(g, "fe80::1", "link-local")
	f(g, "fe80::1%eth0", "link-local")
	f(g, "224.0.0.1", "multicast")
	f(g, "ff02::1", "multicast")
	f(g, "0.0.0.0", "unspecified")
	f(g, "::", "unspecified")
	f(g, "0.1.2.3", `reserved ("this network", 0.0.0.0/8)`)
	f(g, "100.64.0.1", "reserved (shared address space, 100.64.0.0/10)")
	f(g, "255.255.255.255", "reserved (limited broadcast, 255.255.255.255/32)")
	// IPv6 forms carrying an IPv4 address are judged by it as well.
	f(g, "64:ff9b::7f00:1", "loopback (127.0.0.1 in NAT64 64:ff9b::/96)")
	f(g, "64:ff9b::a9fe:a9fe", "cloud metadata (169.254.169.254 in NAT64 64:ff9b::/96)")
	f(g, "2002:a00:1::1", "reserved (6to4, 2002::/16)")
	f(g, "::10.0.0.1", "reserved (deprecated IPv4-compatible 10.0.0.1 in ::/96)")
	f(g, "::127.0.0.1", "reserved (deprecated IPv4-compatible 127.0.0.1 in ::/96)")
	f(g, "64:ff9b:1::a00:1", "reserved (local-use IPv4-IPv6 translation, 64:ff9b:1::/48)")
	f(g, "64:ff9b::5db8:d822", "")
	f(g, "2002:5db8:d822::1", "reserved (6to4, 2002::/16)")
	f(allowing, "64:ff9b::a00:1", "")
	f(g, "93.184.216.34", "")
	f(g, "2606:2800:220:1::1", "")
	f(allowing, "10.0.0.1", "")
	f(allowing, "::ffff:10.0.0.1", "")
	f(allowing, "127.0.0.1", "loopback")
	f(&guard{loopback: true}, "127.0.0.1", "")
	f(&guard{loopback: true}, "10.0.0.1", "private")
	// Development mode allows loopback itself, not the IPv6 forms that only
	// carry 127.0.0.1 (a NAT64 gateway or the host would turn them into it).
	f(&guard{loopback: true}, "::1", "")
	f(&guard{loopback: true}, "::ffff:127.0.0.1", "")
	f(&guard{loopback: true}, "64:ff9b::7f00:1", "loopback (127.0.0.1 in NAT64 64:ff9b::/96)")
	f(&guard{loopback: true}, "::127.0.0.1", "reserved (deprecated IPv4-compatible 127.0.0.1 in ::/96)")
	f(&guard{loopback: true}, "2002:7f00:1::1", "reserved (6to4, 2002::/16)")
	f(g, "::ffff:8.8.8.8", "IPv4-mapped (give 8.8.8.8 itself)")
	f(g, "192.0.2.1", "reserved (documentation (TEST-NET-1), 192.0.2.0/24)")
	f(g, "192.0.0.9", "")
}

// specialPurpose is the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (iana-ipv4-special-registry, iana-ipv6-special-registry, as
// of 2025) with their "Globally Reachable" column: "True", "False" or
// "N/A". embeds marks the blocks whose addresses carry an IPv4 address
// (NAT64, 6to4): they are judged by that address as well.
var specialPurpose = []struct {
	block, name, global string
	embeds              bool
}{
	{"0.0.0.0/8", `"This network"`, "False", false},
	{"0.0.0.0/32", `"This host on this network"`, "False", false},
	{"10.0.0.0/8", "Private-Use", "False", false},
	{"100.64.0.0/10", "Shared Address Space", "False", false},
	{"127.0.0.0/8", "Loopback", "False", false},
	{"169.254.0.0/16", "Link Local", "False", false},
	{"172.16.0.0/12", "Private-Use", "False", false},
	{"192.0.0.0/24", "IETF Protocol Assignments", "False", false},
	{"192.0.0.0/29", "IPv4 Service Continuity Prefix", "False", false},
	{"192.0.0.8/32", "IPv4 dummy address", "False", false},
	{"192.0.0.9/32", "Port Control Protocol Anycast", "True", false},
	{"192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "True", false},
	{"192.0.0.170/32", "NAT64/DNS64 Discovery", "False", false},
	{"192.0.0.171/32", "NAT64/DNS64 Discovery", "False", false},
	{"192.0.2.0/24", "Documentation (TEST-NET-1)", "False", false},
	{"192.31.196.0/24", "AS112-v4", "True", false},
	{"192.52.193.0/24", "AMT", "True", false},
	{"192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "N/A", false},
	{"192.168.0.0/16", "Private-Use", "False", false},
	{"192.175.48.0/24", "Direct Delegation AS112 Service", "True", false},
	{"198.18.0.0/15", "Benchmarking", "False", false},
	{"198.51.100.0/24", "Documentation (TEST-NET-2)", "False", false},
	{"203.0.113.0/24", "Documentation (TEST-NET-3)", "False", false},
	{"240.0.0.0/4", "Reserved", "False", false},
	{"255.255.255.255/32", "Limited Broadcast", "False", false},

	{"::1/128", "Loopback Address", "False", false},
	{"::/128", "Unspecified Address", "False", false},
	{"::ffff:0:0/96", "IPv4-mapped Address", "False", false},
	{"64:ff9b::/96", "IPv4-IPv6 Translat.", "True", true},
	{"64:ff9b:1::/48", "IPv4-IPv6 Translat.", "False", false},
	{"100::/64", "Discard-Only Address Block", "False", false},
	{"100:0:0:1::/64", "Dummy IPv6 Prefix", "False", false},
	{"2001::/23", "IETF Protocol Assignments", "False", false},
	{"2001::/32", "TEREDO", "N/A", false},
	{"2001:1::1/128", "Port Control Protocol Anycast", "True", false},
	{"2001:1::2/128", "Traversal Using Relays around NAT Anycast", "True", false},
	{"2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "True", false},
	{"2001:2::/48", "Benchmarking", "False", false},
	{"2001:3::/32", "AMT", "True", false},
	{"2001:4:112::/48", "AS112-v6", "True", false},
	{"2001:10::/28", "Deprecated (previously ORCHID)", "N/A", false},
	{"2001:20::/28", "ORCHIDv2", "True", false},
	{"2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "True", false},
	{"2001:db8::/32", "Documentation", "False", false},
	{"2002::/16", "6to4", "N/A", false},
	{"2620:4f:8000::/48", "Direct Delegation AS112 Service", "True", false},
	{"3fff::/20", "Documentation", "False", false},
	{"5f00::/16", "Segment Routing (SRv6) SIDs", "False", false},
	{"fc00::/7", "Unique-Local", "False", false},
	{"fe80::/10", "Link-Local Unicast", "False", false},
}

// samples returns the first, a middle and the last address of p.
func samples(p netip.Prefix) []netip.Addr {
	first := p.Masked().Addr()
	b := first.AsSlice()
	last := make([]byte, len(b))
	mid := make([]byte, len(b))
	copy(last, b)
	copy(mid, b)
	for i := p.Bits(); i < len(b)*8; i++ {
		last[i/8] |= 1 << (7 - i%8)
	}
	if p.Bits() < len(b)*8 {
		i := p.Bits()
		mid[i/8] |= 1 << (7 - i%8)
	}
	l, _ := netip.AddrFromSlice(last)
	m, _ := netip.AddrFromSlice(mid)
	return []netip.Addr{first, m, l}
}

// Every address of a block the registries mark as not globally reachable
// (or N/A) is refused; the globally reachable blocks inside them are not.
// Addresses are only classified, never dialled.
func TestGuardRefusesEveryNonGlobalSpecialPurposeAddress(t *testing.T) {
	g := &guard{}
	for _, e := range specialPurpose {
		p := netip.MustParsePrefix(e.block)
		for i, a := range samples(p) {
			why := g.refused(a)
			switch {
			case e.global != "True" && why == "":
				t.Errorf("%s (%s, %s, globally reachable %s) is allowed", a, e.block, e.name, e.global)
			case e.global == "True" && e.embeds && (i == 0 || i == 2) && why == "":
				t.Errorf("%s (%s) carries %s and is allowed", a, e.block, "a non-global IPv4 address")
			case e.global == "True" && (!e.embeds || i == 1) && why != "":
				t.Errorf("%s (%s, %s, globally reachable) is refused: %s", a, e.block, e.name, why)
			}
		}
	}
	// Beyond the special-purpose registries: multicast (its own registries),
	// IPv6 outside global unicast 2000::/3 (reserved by the IETF, such as the
	// deprecated site-local fec0::/10 and IPv4-compatible ::/96).
	for _, a := range []string{"224.0.0.1", "239.255.255.255", "ff0e::1", "fec0::1", "4000::1", "::8.8.8.8", "::2", "2002:808:808::1"} {
		if g.refused(netip.MustParseAddr(a)) == "" {
			t.Errorf("%s is allowed", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "64:ff9b::808:808"} {
		if why := g.refused(netip.MustParseAddr(a)); why != "" {
			t.Errorf("%s is refused: %s", a, why)
		}
	}
}

// The machine's own interface addresses are refused unless allow-listed,
// whatever block they are in (this host's eth0 is 192.0.2.2, fd00::2).
func TestGuardRefusesThisHostsAddresses(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	g := &guard{}
	n := 0
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		ip = ip.Unmap()
		n++
		if why := g.refused(ip); why == "" {
			t.Errorf("this host's address %s is allowed", ip)
		}
		allowing := &guard{allow: []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}}
		if why := allowing.refused(ip); why != "" {
			t.Errorf("this host's address %s, allow-listed, is refused: %s", ip, why)
		}
	}
	if n == 0 {
		t.Fatal("no interface addresses")
	}
}
