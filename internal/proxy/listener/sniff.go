package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// connMeta is what chain selection knows about a connection: what the TLS
// inspector (transport protocol, SNI, ALPN) found in its first bytes.
type connMeta struct {
	transport string // "tls" or "raw_buffer"
	sni       string
	alpn      []string // offered by a TLS client
	// plaintextHTTP: the connection is known to carry HTTP/1.1 or h2c
	// (the outbound forward proxy parsed it), as Envoy's http_inspector
	// would report.
	plaintextHTTP bool
	// host is the destination host the forward proxy was asked for
	// (CONNECT or absolute-form target, without port); "" on bound sockets.
	host string
}

// sniffTimeout bounds the wait for a client's first bytes; a client that
// sends nothing (server-first protocols) is then taken as raw_buffer, as
// Envoy's continue_on_listener_filters_timeout does.
const sniffTimeout = 5 * time.Second

func (fc *filterChain) matchesAll() bool {
	return fc.destPort == 0 && len(fc.serverNames) == 0 && fc.transport == "" && len(fc.alpn) == 0 && len(fc.hosts) == 0
}

// needsSniff: chains that differ by what a connection's first bytes say.
func (fc *filterChain) needsSniff() bool {
	return fc.tls != nil || fc.transport != "" || len(fc.serverNames) > 0 || len(fc.alpn) > 0
}

// matchKey identifies a filter_chain_match; two chains with the same key
// are ambiguous.
func (fc *filterChain) matchKey() string {
	sn := slices.Clone(fc.serverNames)
	sort.Strings(sn)
	ap := slices.Clone(fc.alpn)
	sort.Strings(ap)
	hs := slices.Clone(fc.hosts)
	sort.Strings(hs)
	return fmt.Sprintf("%d|%s|%s|%s|%s", fc.destPort, strings.Join(sn, ","), fc.transport, strings.Join(ap, ","), strings.Join(hs, ","))
}

// selectChain is Envoy's filter chain match: at each level in turn
// (destination_port, server_names, transport_protocol,
// application_protocols) the chains naming the connection's value win over
// the chains leaving the level empty; there is no backtracking. No chain
// left: the default_filter_chain, if any (nil closes the connection).
func (l *Listener) selectChain(port uint32, m connMeta) *filterChain {
	cands := narrow(l.chains, func(fc *filterChain) (bool, int) {
		return fc.destPort != 0, boolScore(fc.destPort == port)
	})
	cands = narrow(cands, func(fc *filterChain) (bool, int) {
		// Skein's local-mode destination host (where Envoy would match the
		// original destination IP with prefix_ranges).
		return len(fc.hosts) > 0, boolScore(m.host != "" && slices.Contains(fc.hosts, strings.ToLower(m.host)))
	})
	cands = narrow(cands, func(fc *filterChain) (bool, int) {
		return len(fc.serverNames) > 0, sniScore(fc.serverNames, m.sni)
	})
	cands = narrow(cands, func(fc *filterChain) (bool, int) {
		return fc.transport != "", boolScore(fc.transport == m.transport)
	})
	cands = narrow(cands, func(fc *filterChain) (bool, int) {
		return len(fc.alpn) > 0, boolScore(alpnMatches(fc.alpn, m))
	})
	if len(cands) == 0 {
		return l.defaultFC
	}
	return cands[0]
}

// narrow keeps the chains that name a matching value at one level (the best
// scoring ones), else the chains that leave the level empty.
func narrow(in []*filterChain, level func(*filterChain) (specific bool, score int)) []*filterChain {
	var best []*filterChain
	bestScore := 0
	var wildcard []*filterChain
	for _, fc := range in {
		specific, score := level(fc)
		switch {
		case !specific:
			wildcard = append(wildcard, fc)
		case score > bestScore:
			best, bestScore = []*filterChain{fc}, score
		case score > 0 && score == bestScore:
			best = append(best, fc)
		}
	}
	if len(best) > 0 {
		return best
	}
	return wildcard
}

func boolScore(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sniScore: an exact server name beats the longest matching "*.suffix".
func sniScore(names []string, sni string) int {
	if sni == "" {
		return 0
	}
	best := 0
	for _, n := range names {
		switch {
		case strings.EqualFold(n, sni):
			return 1 << 20
		case strings.HasPrefix(n, "*.") && len(sni) > len(n)-1 && strings.HasSuffix(strings.ToLower(sni), strings.ToLower(n[1:])):
			best = max(best, len(n))
		}
	}
	return best
}

func alpnMatches(want []string, m connMeta) bool {
	for _, p := range want {
		if slices.Contains(m.alpn, p) {
			return true
		}
		// Envoy's http_inspector reports http/1.x or h2c for plaintext HTTP;
		// this proxy's HTTP server serves both on one connection.
		if m.transport == "raw_buffer" && m.plaintextHTTP && plaintextHTTPProtocols[p] {
			return true
		}
	}
	return false
}

// sniff peeks at a new connection, as Envoy's tls_inspector does: a TLS
// handshake record starts with 0x16 0x03; its ClientHello gives SNI and
// ALPN. It returns a connection that replays every byte read.
func sniff(c net.Conn, timeout time.Duration) (connMeta, net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	m := connMeta{transport: "raw_buffer", plaintextHTTP: true}
	head, err := br.Peek(2)
	if err != nil || head[0] != 0x16 || head[1] != 0x03 {
		return m, &replayConn{Conn: c, r: br}
	}
	m.transport, m.plaintextHTTP = "tls", false
	var seen bytes.Buffer
	hello := readClientHello(io.TeeReader(br, &seen))
	if hello != nil {
		m.sni, m.alpn = hello.ServerName, hello.SupportedProtos
	}
	return m, &replayConn{Conn: c, r: io.MultiReader(&seen, br)}
}

var errSniffed = errors.New("client hello read")

// readClientHello parses a ClientHello with crypto/tls itself, on a
// connection that only reads (nothing is ever written to the client).
func readClientHello(r io.Reader) *tls.ClientHelloInfo {
	var hello *tls.ClientHelloInfo
	srv := tls.Server(readOnlyConn{r: r}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			cp := *h
			cp.SupportedProtos = slices.Clone(h.SupportedProtos)
			hello = &cp
			return nil, errSniffed
		},
	})
	srv.Handshake()
	return hello
}

// readOnlyConn feeds a sniffing TLS server; writes (alerts) are dropped.
type readOnlyConn struct{ r io.Reader }

func (c readOnlyConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c readOnlyConn) Close() error                     { return nil }
func (c readOnlyConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c readOnlyConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (c readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (c readOnlyConn) SetWriteDeadline(time.Time) error { return nil }

// replayConn is a connection whose first bytes were peeked at.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// servedConn is what the HTTP server accepts: the connection (decrypted
// when TLS was terminated: the HTTP server then reads HTTP/1.1 and h2 alike
// from the plain stream) and what chain selection learnt about it, with
// the TLS state for filters (peer certificate, SPIFFE identity).
type servedConn struct {
	net.Conn
	meta connMeta
	tls  *tls.ConnectionState
	// chosen memoises the chain picked for this connection under one
	// listener generation: requests on a kept-alive connection skip the
	// match until a config update replaces the listener. Atomic because
	// HTTP/2 serves a connection's streams concurrently.
	chosen atomic.Pointer[chainChoice]
	// state is what the connection manager keeps across the connection's
	// requests.
	state hcm.ConnState
}

type chainChoice struct {
	l  *Listener
	fc *filterChain
}

// chainUnder is the connection's chain under listener l.
func (c *servedConn) chainUnder(l *Listener, port uint32) *filterChain {
	if ch := c.chosen.Load(); ch != nil && ch.l == l {
		return ch.fc
	}
	fc := l.selectChain(port, c.meta)
	c.chosen.Store(&chainChoice{l: l, fc: fc})
	return fc
}

func (c *servedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
