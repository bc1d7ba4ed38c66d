// Package origdst reads the destination a TCP connection had before
// iptables REDIRECT rewrote it to the sidecar's port: what Envoy's
// original_dst listener filter reads, and what virtualOutbound (15001) and
// virtualInbound (15006) dispatch on.
package origdst

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrUnsupported is returned where the kernel offers no original destination.
var ErrUnsupported = errors.New("original destination: not supported on this platform")

// Of returns the original destination of c, an accepted TCP connection
// (a *net.TCPConn, or a wrapper that embeds one and so keeps its
// SyscallConn). For a connection that was not redirected it is the
// connection's own local address.
func Of(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T has no socket (not a TCP connection)", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	ipv4 := local == nil || local.IP.To4() != nil
	ap, err := FromRawConn(rc, ipv4)
	if errors.Is(err, syscall.ENOENT) && local != nil {
		// No NAT entry (conntrack does not track this namespace, or the
		// connection was never redirected): the destination is the
		// connection's own, as Envoy's original_dst filter falls back to.
		l := local.AddrPort()
		return netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), nil
	}
	return ap, err
}

// FromRawConn reads the original destination of the socket rc. ipv4 says
// which table to ask: IPv4 (SO_ORIGINAL_DST, also for IPv4-mapped
// connections on a dual-stack socket) or IPv6 (IP6T_SO_ORIGINAL_DST).
func FromRawConn(rc syscall.RawConn, ipv4 bool) (netip.AddrPort, error) {
	var (
		ap   netip.AddrPort
		oerr error
	)
	if err := rc.Control(func(fd uintptr) { ap, oerr = get(int(fd), ipv4) }); err != nil {
		return netip.AddrPort{}, err
	}
	return ap, oerr
}
