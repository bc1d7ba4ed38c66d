package listener

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/upstream"
)

// outboundProxy is the virtualOutbound listener in local mode. Apps send it
// proxy requests (HTTP_PROXY); each is handed to the bind_to_port=false
// listener for the target port, as Envoy's use_original_dst hands a
// redirected connection over. Without one, the listener's own chain (the
// PassthroughFilterChain) forwards to the target itself.
type outboundProxy struct {
	state *atomic.Pointer[state]
	self  *Listener
}

func (o *outboundProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authority := r.URL.Host // absolute-form request
	if authority == "" {
		authority = r.Host // h2 or origin-form: the authority is the target
	}
	target := hcm.WithDefaultPort(authority, "80")
	host, portText, _ := net.SplitHostPort(target)
	port64, _ := strconv.ParseUint(portText, 10, 32)
	port := uint32(port64)

	if r.Method == http.MethodConnect && r.ProtoMajor == 1 {
		if l := o.state.Load().outbound(host, port); l != nil && l.sniff {
			o.connectSniffed(w, l, host, port, target)
			return
		}
	}
	fc := o.chainFor(host, port)
	if r.Method == http.MethodConnect {
		o.connect(w, r, fc, target)
		return
	}
	switch {
	case fc == nil:
		http.Error(w, "no listener for port "+portText, http.StatusNotFound)
	case fc.http != nil:
		fc.http.Serve(w, r, target)
	default:
		fc.tcp.httpForwarder().Serve(w, r, target)
	}
}

// chainFor finds the chain serving host:port: the handed-off listener's,
// else this listener's own passthrough chain.
func (o *outboundProxy) chainFor(host string, port uint32) *filterChain {
	if l := o.state.Load().outbound(host, port); l != nil {
		if fc := l.chainFor(host, port); fc != nil {
			return fc
		}
	}
	return o.self.fallback
}

// connect serves a CONNECT tunnel (HTTPS_PROXY, gRPC, or any TCP through
// the proxy) as an intercepted connection to the target: the chain of the
// target port's listener (for the target host) serves the tunnelled bytes —
// its HTTP connection manager (HTTP/1.1 or h2c, as gRPC sends) or its
// tcp_proxy — else the passthrough chain relays them.
func (o *outboundProxy) connect(w http.ResponseWriter, r *http.Request, fc *filterChain, target string) {
	if fc != nil && fc.http != nil && r.ProtoMajor == 1 {
		tunnelHTTP(w, fc.http, target)
		return
	}
	if fc == nil || fc.tcp == nil {
		fc = o.self.fallback
	}
	if fc == nil || fc.tcp == nil {
		http.Error(w, "no TCP route for "+target, http.StatusServiceUnavailable)
		return
	}
	tp := fc.tcp
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	up, cl, upPeer, err := tp.dial(ctx, target)
	cancel()
	if err != nil {
		http.Error(w, upstream.BodyConnectFail, http.StatusServiceUnavailable)
		return
	}
	defer up.Close()
	tp.cxTotal.Inc()
	tp.cxActive.Inc()
	defer tp.cxActive.Dec()

	if r.ProtoMajor >= 2 {
		// HTTP/2 CONNECT: the stream's body is the tunnel.
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(up, r.Body)
			closeWrite(up)
		}()
		upstream.CopyBody(w, up, rc, true)
		wg.Wait()
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	closed := tp.open(conn, upPeer, cl.Name())
	rx, tx := pipe(&bufferedConn{Conn: conn, r: brw.Reader}, up, tp.idleTimeout)
	tp.bytesRx.Add(uint64(rx))
	tp.bytesTx.Add(uint64(tx))
	closed(rx, tx)
}

// httpForwarder is a connection manager for HTTP requests that reach a
// tcp_proxy chain through the forward proxy: it sends them, unchanged, to
// the tcp_proxy's cluster (the same bytes tcp_proxy would relay).
func (t *tcpProxy) httpForwarder() *hcm.ConnectionManager {
	t.forwarderOnce.Do(func() {
		t.forwarder = hcm.NewPassthrough(&t.deps.Env, t.statPrefix, t.pickCluster)
	})
	return t.forwarder
}

// tunnelHTTP serves the HTTP/1.1 CONNECT tunnel w with the connection
// manager h, exactly as if the tunnelled connection had been redirected to
// h's listener: an HTTP server reads HTTP/1.1 or h2c (prior knowledge, as
// gRPC speaks) from the tunnel until the client closes it.
func tunnelHTTP(w http.ResponseWriter, h *hcm.ConnectionManager, target string) {
	conn, ok := acceptTunnel(w)
	if !ok {
		return
	}
	serveHTTPTunnel(conn, h, target)
}

// acceptTunnel takes over an HTTP/1.1 CONNECT request's connection and
// answers 200: what follows are the tunnelled bytes.
func acceptTunnel(w http.ResponseWriter) (net.Conn, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return nil, false
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		return nil, false
	}
	return &bufferedConn{Conn: conn, r: brw.Reader}, true
}

// connectSniffed serves a CONNECT to a listener whose chains differ by what
// the first bytes say (TLS routes: server_names): the tunnel is accepted
// first, its first bytes inspected as tls_inspector would, then the chain
// for host, SNI and transport serves it.
func (o *outboundProxy) connectSniffed(w http.ResponseWriter, l *Listener, host string, port uint32, target string) {
	tunnel, ok := acceptTunnel(w)
	if !ok {
		return
	}
	meta, conn := sniff(tunnel, sniffTimeout)
	meta.host = host
	fc := l.selectChain(port, meta)
	if fc == nil {
		fc = o.self.fallback
	}
	switch {
	case fc != nil && fc.tcp != nil:
		fc.tcp.serve(conn, target)
	case fc != nil && fc.http != nil && meta.transport == "raw_buffer":
		serveHTTPTunnel(conn, fc.http, target)
	default: // as Envoy closes a connection no filter chain matches
		conn.Close()
	}
}

// serveHTTPTunnel serves a tunnel's bytes with the connection manager h.
func serveHTTPTunnel(conn net.Conn, h *hcm.ConnectionManager, target string) {
	done := make(chan struct{})
	tunnel := &closeNotifyConn{Conn: conn, done: done}
	ln := newChanListener(conn.LocalAddr())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.Serve(w, r, target) }),
		Protocols:         &protocols,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(slogWriter{h.Logger()}, "", 0),
	}
	go srv.Serve(ln)
	if !ln.push(tunnel) {
		tunnel.Close()
	}
	<-done // the server closed the tunnel (client gone, idle, or error)
	ln.Close()
}

// closeNotifyConn signals done when the connection is closed.
type closeNotifyConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *closeNotifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
