package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/tlsconfig"
)

// transportSocketMatchKey is the endpoint metadata namespace that
// transport_socket_matches read (Istio puts tlsMode there).
const transportSocketMatchKey = "envoy.transport_socket_match"

var socketMatchFields = protocheck.Fields(&clusterv3.Cluster_TransportSocketMatch{}, "name", "match", "transport_socket")

// upstreamSockets is how a cluster connects to its endpoints: the
// transport_socket for all, or per endpoint the first
// transport_socket_matches entry whose match its metadata satisfies.
// Connections are pooled per address, and an address has exactly one
// socket at a time, so TLS and plaintext endpoints never share a pool.
type upstreamSockets struct {
	def     *tlsconfig.Socket
	matches []socketMatch
	byAddr  atomic.Pointer[map[string]*tlsconfig.Socket] // set when matches exist
	// source is the local address upstream connections start from (the
	// pod IP), so servers see the client pod as the peer; only used for
	// destinations of the same kind (loopback or not).
	source netip.Addr
}

type socketMatch struct {
	name   string
	match  *structpb.Struct
	socket *tlsconfig.Socket
}

func (b *builder) upstreamSockets(pc *clusterv3.Cluster) (*upstreamSockets, error) {
	u := &upstreamSockets{source: b.source}
	def, err := tlsconfig.Compile(pc.GetTransportSocket(), false, b.certs)
	if err != nil {
		return nil, fmt.Errorf("transport_socket: %v", err)
	}
	u.def = def
	for i, m := range pc.GetTransportSocketMatches() {
		if err := socketMatchFields.Check(m); err != nil {
			return nil, fmt.Errorf("transport_socket_matches[%d]: %v", i, err)
		}
		s, err := tlsconfig.Compile(m.GetTransportSocket(), false, b.certs)
		if err != nil {
			return nil, fmt.Errorf("transport_socket_matches[%d] (%s).transport_socket: %v", i, m.GetName(), err)
		}
		u.matches = append(u.matches, socketMatch{name: m.GetName(), match: m.GetMatch(), socket: s})
	}
	u.byAddr.Store(&map[string]*tlsconfig.Socket{})
	return u, nil
}

// socketFor picks the socket of an endpoint from its metadata.
func (u *upstreamSockets) socketFor(md *corev3.Metadata) *tlsconfig.Socket {
	have := md.GetFilterMetadata()[transportSocketMatchKey].GetFields()
	for _, m := range u.matches {
		ok := true
		for k, v := range m.match.GetFields() {
			if hv, found := have[k]; !found || !proto.Equal(hv, v) {
				ok = false
				break
			}
		}
		if ok {
			return m.socket
		}
	}
	return u.def
}

// assign records the socket of each endpoint address. It reports whether
// an address that stays changed socket: pooled connections to it must
// then be dropped.
func (u *upstreamSockets) assign(hosts []hostPort) (changed bool) {
	if len(u.matches) == 0 {
		return false
	}
	prev := *u.byAddr.Load()
	next := make(map[string]*tlsconfig.Socket, len(hosts))
	for _, h := range hosts {
		s := u.socketFor(h.metadata)
		next[h.address()] = s
		if old, ok := prev[h.address()]; ok && old != s {
			changed = true
		}
	}
	u.byAddr.Store(&next)
	return changed
}

func (u *upstreamSockets) forAddr(addr string) *tlsconfig.Socket {
	if s, ok := (*u.byAddr.Load())[addr]; ok {
		return s
	}
	return u.def
}

// dialer returns d bound to the source address when the destination is of
// the same kind (a loopback pod IP cannot reach other hosts).
func (u *upstreamSockets) dialer(d *net.Dialer, addr string) *net.Dialer {
	if !u.source.IsValid() {
		return d
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().IsLoopback() != u.source.IsLoopback() || ap.Addr().Is4() != u.source.Is4() {
		return d
	}
	bound := *d
	bound.LocalAddr = &net.TCPAddr{IP: u.source.AsSlice()}
	return &bound
}

// secure runs the TLS handshake of addr's socket on a new connection
// (nothing to do for plaintext). A failed handshake is a connect failure
// (Envoy's UF), as in Envoy.
func (c *Cluster) secure(ctx context.Context, addr string, conn net.Conn) (net.Conn, error) {
	s := c.sockets.forAddr(addr)
	if !s.IsTLS() {
		return conn, nil
	}
	tc := tls.Client(conn, s.Upstream)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		c.Stats.CxConnectFail.Inc()
		return nil, &ConnectError{Address: addr, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	return tc, nil
}
