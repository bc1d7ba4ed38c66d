package hcm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/cors"
	"github.com/skein-mesh/skein/internal/proxy/filters/fault"
	"github.com/skein-mesh/skein/internal/proxy/filters/localratelimit"
	"github.com/skein-mesh/skein/internal/proxy/filters/rbac"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// FuzzHTTP1Request feeds arbitrary bytes, parsed as an HTTP/1 request the
// way the proxy's server parses them, through a connection manager with
// regex routes, rewrites, hashing, retries, mirroring and the fault, CORS,
// rate limit and RBAC filters, to a real upstream. Whatever the request,
// the proxy must answer with a valid status and never crash.
//
//	go test -run '^$' -fuzz FuzzHTTP1Request -fuzztime 60s ./internal/proxy/hcm/
func FuzzHTTP1Request(f *testing.F) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	defer backend.Close()
	clusters := backendClusters(f, backend.Listener.Addr())
	cfg := noParseConfig(f)
	// Faults would only slow the fuzzer down.
	cfg.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].TypedPerFilterConfig = nil
	reg := filters.NewRegistry()
	fault.Register(reg)
	cors.Register(reg)
	localratelimit.Register(reg, localratelimit.Options{})
	rbac.Register(reg, rbac.Options{})
	cm, err := New(cfg, &Env{Clusters: clusters, HTTPFilters: reg, Stats: stats.NewStore()})
	if err != nil {
		f.Fatal(err)
	}

	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /re/abc HTTP/1.1\r\nHost: reviews:9080\r\nX-User: bob\r\nCookie: sticky=1\r\nGrpc-Timeout: 3S\r\n\r\n",
		"OPTIONS /re/abc HTTP/1.1\r\nHost: a\r\nX-User: bob\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
		"POST /abort HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST //a/../b/./c HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX-Evil: yes\r\n\r\nbody",
		"GET http://example.com:80/x?y=z HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // the server answers 400 itself
		}
		r.RemoteAddr = "127.0.0.1:40000"
		r.RequestURI = r.URL.RequestURI()
		if r.URL.IsAbs() {
			r.RequestURI = r.URL.String()
		}
		w := httptest.NewRecorder()
		func() {
			defer func() {
				// The handler aborts a response it cannot finish, as
				// net/http expects; anything else is a crash.
				if p := recover(); p != nil && !errors.Is(asError(p), http.ErrAbortHandler) {
					panic(p)
				}
			}()
			cm.ServeHTTP(w, r)
		}()
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("status %d", w.Code)
		}
	})
}

func asError(p any) error {
	err, _ := p.(error)
	return err
}
