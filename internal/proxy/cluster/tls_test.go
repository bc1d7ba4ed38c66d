package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/tlsconfig"
)

type identity struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (i identity) Certificate() (*tls.Certificate, error) { return i.cert, nil }
func (i identity) Roots() *x509.CertPool                  { return i.roots }

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
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, identity{cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots: pool})
	}
	return out
}

func packed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// autoMTLSCluster is what the translation emits for auto mTLS: mTLS to
// endpoints marked tlsMode=istio (checking the server's SPIFFE identity),
// plaintext to the others.
func autoMTLSCluster(t *testing.T, name, san string) *clusterv3.Cluster {
	c := edsCluster(name)
	mtls := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: tlsconfig.SDSDefault}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
			}}},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: tlsconfig.SDSRootCA},
		}},
	}}
	match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: match, TransportSocket: &corev3.TransportSocket{Name: tlsconfig.TLSSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: packed(t, mtls)}}},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{Name: tlsconfig.RawBufferSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: packed(t, &rawbufferv3.RawBuffer{})}}},
	}
	return c
}

func TestTransportSocketMatches(t *testing.T) {
	const (
		reviews = "spiffe://cluster.local/ns/bookinfo/sa/reviews"
		client  = "spiffe://cluster.local/ns/bookinfo/sa/productpage"
	)
	ids := newIdentities(t, reviews, client)
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			peer = r.TLS.PeerCertificates[0].URIs[0].String()
		}
		fmt.Fprintf(w, "tls=%v peer=%s", r.TLS != nil, peer)
	})
	// A sidecar: mTLS only, clients of the mesh CA.
	rawLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tls.NewListener(rawLn, &tls.Config{Certificates: []tls.Certificate{*ids[0].cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		// No ALPN: Go's http.Server closes connections that negotiated a
		// protocol it does not serve (the sidecar's listener does not).
		ClientCAs: ids[0].roots})
	go (&http.Server{Handler: echo, ErrorLog: log.New(newTestWriter(t), "", 0)}).Serve(tlsLn)
	defer tlsLn.Close()
	// A workload without sidecar: plaintext.
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(plainLn, echo)
	defer plainLn.Close()

	m := NewManager(Options{})
	m.b.certs = ids[1]
	cla := func(name string) *endpointv3.ClusterLoadAssignment {
		a := assignment(name, tlsLn.Addr().String(), plainLn.Addr().String())
		md, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
		a.Endpoints[0].LbEndpoints[0].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": md}}
		return a
	}
	err = m.Update(map[string]*clusterv3.Cluster{
		"good":     autoMTLSCluster(t, "good", reviews),
		"wrongSAN": autoMTLSCluster(t, "wrongSAN", "spiffe://cluster.local/ns/bookinfo/sa/ratings"),
	}, map[string]*endpointv3.ClusterLoadAssignment{"good": cla("good"), "wrongSAN": cla("wrongSAN")})
	if err != nil {
		t.Fatal(err)
	}
	get := func(cluster, addr string) (string, error) {
		c, _ := m.Get(cluster)
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := c.RoundTripper(false).RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	for _, tc := range []struct{ cluster, addr, want string }{
		{"good", tlsLn.Addr().String(), "tls=true peer=" + client},
		{"good", plainLn.Addr().String(), "tls=false peer="},
		{"wrongSAN", plainLn.Addr().String(), "tls=false peer="},
	} {
		got, err := get(tc.cluster, tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("%s → %s: %q %v, want %q", tc.cluster, tc.addr, got, err, tc.want)
		}
	}
	_, err = get("wrongSAN", tlsLn.Addr().String())
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Errorf("server with the wrong identity: %v, want a ConnectError", err)
	}
}

// testWriter sends a server's error log to the test's log while the test
// runs; a handshake the server finishes after the test is dropped (logging
// then would panic).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}
