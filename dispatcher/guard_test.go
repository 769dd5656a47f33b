package dispatcher

import (
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
	f(g, "fd00:ec2::254", "private")
	f(g, "169.254.169.254", "cloud metadata")
	f(g, "::ffff:169.254.169.254", "cloud metadata")
	f(g, "169.254.1.1", "link-local")
	f(g, "fe80::1", "link-local")
	f(g, "fe80::1%eth0", "link-local")
	f(g, "224.0.0.1", "multicast")
	f(g, "ff02::1", "multicast")
	f(g, "0.0.0.0", "unspecified")
	f(g, "::", "unspecified")
	f(g, "0.1.2.3", "reserved")
	f(g, "100.64.0.1", "reserved")
	f(g, "255.255.255.255", "reserved")
	// IPv6 forms carrying an IPv4 address are judged by it as well.
	f(g, "64:ff9b::7f00:1", "loopback (127.0.0.1 in NAT64 64:ff9b::/96)")
	f(g, "64:ff9b::a9fe:a9fe", "cloud metadata (169.254.169.254 in NAT64 64:ff9b::/96)")
	f(g, "2002:a00:1::1", "private (10.0.0.1 in 6to4 2002::/16)")
	f(g, "::10.0.0.1", "private (10.0.0.1 in IPv4-compatible ::/96)")
	f(g, "::127.0.0.1", "loopback (127.0.0.1 in IPv4-compatible ::/96)")
	f(g, "64:ff9b:1::a00:1", "reserved")
	f(g, "64:ff9b::5db8:d822", "")
	f(g, "2002:5db8:d822::1", "")
	f(allowing, "64:ff9b::a00:1", "")
	f(g, "93.184.216.34", "")
	f(g, "2606:2800:220:1::1", "")
	f(allowing, "10.0.0.1", "")
	f(allowing, "::ffff:10.0.0.1", "")
	f(allowing, "127.0.0.1", "loopback")
	f(&guard{loopback: true}, "127.0.0.1", "")
	f(&guard{loopback: true}, "10.0.0.1", "private")
}
