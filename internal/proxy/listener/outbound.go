package listener

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/skein-mesh/skein/internal/proxy/router"
)

// Server header transformations, shortened.
const (
	hcmOverwrite      = hcmv3.HttpConnectionManager_OVERWRITE
	hcmAppendIfAbsent = hcmv3.HttpConnectionManager_APPEND_IF_ABSENT
	hcmPassThrough    = hcmv3.HttpConnectionManager_PASS_THROUGH
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
	target := withDefaultPort(authority, "80")
	host, portText, _ := net.SplitHostPort(target)
	port64, _ := strconv.ParseUint(portText, 10, 32)
	port := uint32(port64)

	fc := o.chainFor(host, port)
	if r.Method == http.MethodConnect {
		o.connect(w, r, fc, target)
		return
	}
	switch {
	case fc == nil:
		http.Error(w, "no listener for port "+portText, http.StatusNotFound)
	case fc.http != nil:
		fc.http.serve(w, r, target)
	default:
		fc.tcp.httpForwarder().serve(w, r, target)
	}
}

// chainFor finds the chain serving host:port: the handed-off listener's,
// else this listener's own passthrough chain.
func (o *outboundProxy) chainFor(host string, port uint32) *filterChain {
	if l := o.state.Load().outbound(host, port); l != nil {
		if fc := l.chainFor(port); fc != nil {
			return fc
		}
	}
	return o.self.fallback
}

// connect serves a CONNECT tunnel (HTTPS_PROXY, or any TCP through the
// proxy) with the tcp_proxy of the target port's listener, else the
// passthrough chain.
func (o *outboundProxy) connect(w http.ResponseWriter, r *http.Request, fc *filterChain, target string) {
	if fc == nil || fc.tcp == nil {
		fc = o.self.fallback
	}
	if fc == nil || fc.tcp == nil {
		http.Error(w, "no TCP route for "+target, http.StatusServiceUnavailable)
		return
	}
	tp := fc.tcp
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	up, _, err := tp.dial(ctx, target)
	cancel()
	if err != nil {
		http.Error(w, bodyConnectFail, http.StatusServiceUnavailable)
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
		copyBody(w, up, rc, true)
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
	rx, tx := pipe(&bufferedConn{Conn: conn, r: brw.Reader}, up, tp.idleTimeout)
	tp.bytesRx.Add(uint64(rx))
	tp.bytesTx.Add(uint64(tx))
}

// httpForwarder is a connection manager for HTTP requests that reach a
// tcp_proxy chain through the forward proxy: it sends them, unchanged, to
// the tcp_proxy's cluster (the same bytes tcp_proxy would relay).
func (t *tcpProxy) httpForwarder() *connectionManager {
	t.forwarderOnce.Do(func() {
		t.forwarder = &connectionManager{
			deps:                t.deps,
			statPrefix:          t.statPrefix,
			fixed:               &router.Decision{Cluster: t.cluster},
			transparent:         true,
			serverHeader:        hcmPassThrough,
			suppressEnvoyHeader: true,
		}
		t.forwarder.initStats()
	})
	return t.forwarder
}
