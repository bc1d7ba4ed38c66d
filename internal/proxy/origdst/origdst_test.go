package origdst

import (
	"net"
	"net/netip"
	"testing"
)

// A connection nothing redirected has its own destination as the original
// one, for IPv4 and IPv6 sockets alike. (Redirected sockets are tested
// with real iptables rules in internal/capture's network namespace test.)
func TestNotRedirectedIsOwnDestination(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (no such family here)", addr, err)
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := Of(s)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.MustParseAddrPort(ln.Addr().String())
		if got != want {
			t.Errorf("Of(conn to %s) = %s, want %s", ln.Addr(), got, want)
		}
	}
	if _, err := Of(struct{ net.Conn }{}); err == nil {
		t.Error("Of(a conn without a socket) succeeded")
	}
}
