package listener

import (
	"bufio"
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// socketHandler is what a bound socket currently serves: HTTP (a connection
// manager or the outbound forward proxy) or TCP. Swapping it never re-binds.
type socketHandler struct {
	listener string // listener name, for logs and admin
	chain    string
	http     http.Handler
	tcp      *tcpProxy
	// l is set when the listener's chains are chosen per connection (by
	// destination port, SNI, transport protocol, ALPN), with TLS
	// termination; port is the destination port the socket stands for.
	l    *Listener
	port uint32
}

// socket is one bound address. Accepted connections go to the current
// handler: TCP ones are proxied directly, HTTP ones are fed to an
// http.Server serving HTTP/1.1 and h2c.
type socket struct {
	addr    string
	ln      net.Listener
	handler atomic.Pointer[socketHandler]
	httpLn  *chanListener
	srv     *http.Server
	log     *slog.Logger

	cxTotal  *stats.Counter
	cxActive *stats.Gauge

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // every open downstream connection
	tcpWG sync.WaitGroup            // TCP-proxied connections in flight
}

func newSocket(ln net.Listener, st *stats.Store, logger *slog.Logger) *socket {
	addr := ln.Addr().String()
	s := &socket{
		addr:     addr,
		ln:       ln,
		httpLn:   newChanListener(ln.Addr()),
		log:      logger.With("address", addr),
		cxTotal:  st.Counter("listener." + addr + ".downstream_cx_total"),
		cxActive: st.Gauge("listener." + addr + ".downstream_cx_active"),
		conns:    map[*trackedConn]struct{}{},
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		Protocols:         &protocols,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if sc, ok := c.(*servedConn); ok {
				return hcm.WithConnState(context.WithValue(ctx, servedConnKey{}, sc), &sc.state)
			}
			return ctx
		},
	}
	return s
}

type servedConnKey struct{}

func (s *socket) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.handler.Load()
	if sc, ok := r.Context().Value(servedConnKey{}).(*servedConn); ok && h.l != nil {
		// Chains are chosen per connection; the current listener decides,
		// so a connection the new config no longer admits (plaintext after
		// STRICT) gets no more requests through.
		r.TLS = sc.tls
		fc := sc.chainUnder(h.l, h.port)
		if fc == nil || fc.http == nil || (fc.tls != nil) != (sc.tls != nil) {
			w.Header().Set("Connection", "close")
			http.Error(w, "listener no longer serves this connection", http.StatusServiceUnavailable)
			return
		}
		fc.http.ServeHTTP(w, r)
		return
	}
	if h.http == nil { // the address switched to TCP while this connection was open
		http.Error(w, "listener no longer serves HTTP", http.StatusServiceUnavailable)
		return
	}
	h.http.ServeHTTP(w, r)
}

func (s *socket) start() {
	go s.srv.Serve(s.httpLn)
	go s.acceptLoop()
}

func (s *socket) acceptLoop() {
	delay := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "error", err)
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		tc := s.track(c)
		h := s.handler.Load()
		if h.l != nil {
			s.tcpWG.Add(1) // until handed to the HTTP server or proxied
			go s.serveChain(tc, h)
			continue
		}
		if h.tcp != nil {
			s.tcpWG.Add(1)
			go func() {
				defer s.tcpWG.Done()
				h.tcp.serve(tc, "")
			}()
			continue
		}
		if !s.httpLn.push(tc) {
			tc.Close()
		}
	}
}

func (s *socket) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, s: s}
	s.cxTotal.Inc()
	s.cxActive.Inc()
	s.mu.Lock()
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

// shutdown stops accepting, lets requests and TCP connections in flight
// finish until ctx ends, then closes whatever is left.
func (s *socket) shutdown(ctx context.Context) {
	s.ln.Close()
	httpDone := make(chan struct{})
	go func() {
		s.srv.Shutdown(ctx) // closes idle HTTP connections at once
		close(httpDone)
	}()
	tcpDone := make(chan struct{})
	go func() {
		s.tcpWG.Wait()
		close(tcpDone)
	}()
	select {
	case <-ctx.Done():
	case <-httpDone:
		select {
		case <-ctx.Done():
		case <-tcpDone:
		}
	}
	s.srv.Close()
	s.mu.Lock()
	left := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left { // hijacked (CONNECT, websocket) and TCP connections
		c.Close()
	}
}

// trackedConn counts downstream_cx_active and lets shutdown close
// connections http.Server no longer tracks (hijacked ones).
type trackedConn struct {
	net.Conn
	s    *socket
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.cxActive.Dec()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// chanListener hands connections accepted elsewhere to an http.Server.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// bufferedConn is a hijacked connection whose first bytes may already sit
// in the server's read buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// slogWriter sends http.Server's own error log to slog at debug level
// (client resets and bad requests are not the operator's problem).
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("http server", "message", string(p))
	return len(p), nil
}
