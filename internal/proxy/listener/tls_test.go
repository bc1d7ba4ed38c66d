package listener

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/stats"
	"github.com/skein-mesh/skein/internal/proxy/tlsconfig"
)

func TestSelectChain(t *testing.T) {
	tcp := func(name string) []*listenerv3.Filter {
		return []*listenerv3.Filter{filter(t, tcpProxyFilterName, &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: name}})}
	}
	chain := func(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: tcp(name)}
	}
	pl := &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 15006), FilterChains: []*listenerv3.FilterChain{
		chain("strict-9080", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080), TransportProtocol: "tls"}),
		chain("permissive-tls", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9081), TransportProtocol: "tls"}),
		chain("permissive-raw", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9081), TransportProtocol: "raw_buffer"}),
		chain("istio-alpn", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9082), ApplicationProtocols: []string{"istio"}}),
		chain("other-alpn", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9082)}),
		chain("sni-exact", &listenerv3.FilterChainMatch{ServerNames: []string{"a.example.com"}}),
		chain("sni-wildcard", &listenerv3.FilterChainMatch{ServerNames: []string{"*.example.com"}}),
		chain("sni-longer-wildcard", &listenerv3.FilterChainMatch{ServerNames: []string{"*.b.example.com"}}),
		chain("any", nil),
	}}
	l, err := compileListener(pl, &deps{Env: hcm.Env{Stats: stats.NewStore()}})
	if err != nil {
		t.Fatal(err)
	}
	if !l.sniff {
		t.Error("listener with TLS chains must sniff")
	}
	tlsConn := func(sni string, alpn ...string) connMeta { return connMeta{transport: "tls", sni: sni, alpn: alpn} }
	raw := connMeta{transport: "raw_buffer", plaintextHTTP: true}
	for _, tc := range []struct {
		port uint32
		m    connMeta
		want string // "" = no chain: the connection is closed
	}{
		{9080, tlsConn(""), "strict-9080"},
		{9080, raw, ""}, // STRICT: no fallback to the port-less chains
		{9081, tlsConn(""), "permissive-tls"},
		{9081, raw, "permissive-raw"},
		{9082, tlsConn("", "istio-peer-exchange", "istio"), "istio-alpn"},
		{9082, tlsConn("", "h2"), "other-alpn"},
		{1234, tlsConn("a.example.com"), "sni-exact"},
		{1234, tlsConn("x.example.com"), "sni-wildcard"},
		{1234, tlsConn("x.b.example.com"), "sni-longer-wildcard"},
		{1234, tlsConn("example.com"), "any"},
		{1234, raw, "any"},
	} {
		got := ""
		if fc := l.selectChain(tc.port, tc.m); fc != nil {
			got = fc.name
		}
		if got != tc.want {
			t.Errorf("port %d %+v: chain %q, want %q", tc.port, tc.m, got, tc.want)
		}
	}
}

func TestSniffClientHello(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go tls.Client(b, &tls.Config{ServerName: "bookinfo.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}).Handshake()
	m, conn := sniff(a, 2*time.Second)
	if m.transport != "tls" || m.sni != "bookinfo.example.com" || strings.Join(m.alpn, ",") != "h2,http/1.1" {
		t.Fatalf("sniffed %+v", m)
	}
	// Every byte read is replayed: the record header comes first again.
	head := make([]byte, 3)
	if _, err := io.ReadFull(conn, head); err != nil || head[0] != 0x16 || head[1] != 0x03 {
		t.Fatalf("replay starts with % x (%v)", head, err)
	}
	b.Close()

	c, d := net.Pipe()
	defer c.Close()
	go io.WriteString(d, "GET / HTTP/1.1\r\n\r\n")
	m, conn = sniff(c, 2*time.Second)
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if m.transport != "raw_buffer" || line != "GET / HTTP/1.1\r\n" {
		t.Fatalf("plaintext sniffed %+v, replayed %q", m, line)
	}
}

// identity is a test workload certificate with its CA's roots.
type identity struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (i identity) Certificate() (*tls.Certificate, error) { return i.cert, nil }
func (i identity) Roots() *x509.CertPool                  { return i.roots }

// newIdentities makes a CA and one SPIFFE certificate per id.
func newIdentities(t *testing.T, ids ...string) []identity {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	var out []identity
	for i, id := range ids {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		u, _ := url.Parse(id)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), URIs: []*url.URL{u},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, identity{cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots: pool})
	}
	return out
}

func meshTLS(alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		AlpnProtocols:                  alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: tlsconfig.SDSDefault}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: tlsconfig.SDSRootCA},
		}},
	}
}

// TestStrictInbound serves an inbound port with only an mTLS chain, as
// STRICT does: mTLS clients of the mesh get through (HTTP/1.1 and h2),
// plaintext clients and clients of another CA are cut off.
func TestStrictInbound(t *testing.T) {
	const podIP = "127.77.5.1"
	ids := newIdentities(t, "spiffe://cluster.local/ns/bookinfo/sa/reviews", "spiffe://cluster.local/ns/bookinfo/sa/productpage")
	strangers := newIdentities(t, "spiffe://cluster.local/ns/bookinfo/sa/productpage")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s", r.Proto)
	}))
	defer app.Close()
	m := newManager(t, podIP, staticClusters(t, "inbound|9080||", app.Listener.Addr().String()))
	m.deps.certs = ids[0]
	port := freePort(t, podIP)
	ts := &corev3.TransportSocket{Name: tlsconfig.TLSSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: typed(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: meshTLS([]string{"h2", "http/1.1", "istio-peer-exchange", "istio"}), RequireClientCertificate: wrapperspb.Bool(true)})}}
	err := m.Update(map[string]*listenerv3.Listener{"virtualInbound": {
		Name: "virtualInbound", Address: addr("0.0.0.0", 15006),
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}},
		FilterChains: []*listenerv3.FilterChain{{
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: "tls"},
			TransportSocket:  ts,
			Filters:          []*listenerv3.Filter{filter(t, hcmFilterName, inlineHCM("inbound|9080||"))},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(podIP, fmt.Sprint(port))

	client := func(id identity) *tls.Config {
		cfg, err := tlsconfig.Client(&tlsv3.UpstreamTlsContext{CommonTlsContext: meshTLS([]string{"istio-peer-exchange", "istio"})}, id)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, h2 := range []bool{false, true} {
		var p http.Protocols
		if h2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		cfg := client(ids[1])
		tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			return tls.Client(c, cfg), nil
		}}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + target + "/")
		if err != nil {
			t.Fatalf("mTLS request (h2 %v): %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "proto=HTTP/1.1"
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("mTLS request (h2 %v): %d %q, want 200 %q", h2, resp.StatusCode, body, want)
		}
		tr.CloseIdleConnections()
	}

	// Plaintext: closed without an HTTP response.
	c, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, _ := io.ReadAll(c); len(b) > 0 {
		t.Errorf("plaintext client got %q, want the connection closed", b)
	}
	c.Close()

	// A client certificate from another CA: the handshake fails.
	c, err = net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client(strangers[0]))
	err = tc.Handshake()
	if err == nil {
		_, err = tc.Read(make([]byte, 1))
	}
	if err == nil {
		t.Errorf("client of another CA: %v, want a TLS error", err)
	}
}
