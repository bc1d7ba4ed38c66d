package listener

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// handshakeTimeout bounds a downstream TLS handshake.
const handshakeTimeout = 10 * time.Second

// serveChain selects the chain of one accepted connection (peeking at its
// first bytes when chains differ by TLS, SNI or ALPN), terminates TLS when
// the chain has a TLS transport socket, and serves it. A connection no
// chain matches is closed: that is how STRICT mTLS refuses plaintext.
func (s *socket) serveChain(c *trackedConn, h *socketHandler) {
	defer s.tcpWG.Done()
	meta, conn := connMeta{transport: "raw_buffer"}, net.Conn(c)
	if h.l.sniff {
		meta, conn = sniff(c, sniffTimeout)
	}
	fc := h.l.selectChain(h.port, meta)
	if fc == nil {
		s.log.Debug("no filter chain matches; closing connection", "listener", h.listener, "remote", c.RemoteAddr().String(),
			"transport", meta.transport, "sni", meta.sni, "alpn", meta.alpn)
		c.Close()
		return
	}
	var state *tls.ConnectionState
	if fc.tls != nil {
		tc := tls.Server(conn, fc.tls)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("TLS handshake failed", "listener", h.listener, "chain", fc.name, "remote", c.RemoteAddr().String(), "error", err)
			c.Close()
			return
		}
		st := tc.ConnectionState()
		state, conn = &st, tc
	}
	if fc.tcp != nil {
		fc.tcp.serve(conn, "")
		return
	}
	if !s.httpLn.push(&servedConn{Conn: conn, meta: meta, tls: state}) {
		conn.Close()
	}
}
