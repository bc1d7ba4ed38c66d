package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testCA issues SPIFFE workload certificates, like the mesh CA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// workload is a CertSource for one SPIFFE identity.
type workload struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (w workload) Certificate() (*tls.Certificate, error) { return w.cert, nil }
func (w workload) Roots() *x509.CertPool                  { return w.roots }

func (ca *testCA) issue(t *testing.T, id string) workload {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return workload{cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots: ca.pool}
}

func sds(name string) *tlsv3.SdsSecretConfig { return &tlsv3.SdsSecretConfig{Name: name} }

// meshContext is what the translation emits for mesh mTLS.
func meshContext(alpn []string, sans ...string) *tlsv3.CommonTlsContext {
	var m []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		m = append(m, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	return &tlsv3.CommonTlsContext{
		AlpnProtocols:                  alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(SDSDefault)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: m},
			ValidationContextSdsSecretConfig: sds(SDSRootCA),
		}},
	}
}

// handshake runs both sides over a pipe and returns the client's error
// and what the server saw.
func handshake(t *testing.T, server, client *tls.Config) (error, *tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	type res struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan res, 1)
	go func() {
		s := tls.Server(a, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3 clients finish first; read once so a server-side
			// rejection of the client certificate reaches the client.
			s.Write([]byte("x"))
		}
		done <- res{s.ConnectionState(), err}
		if err != nil {
			a.Close()
		}
	}()
	c := tls.Client(b, client)
	cerr := c.Handshake()
	if cerr == nil {
		buf := make([]byte, 1)
		_, cerr = c.Read(buf)
	}
	r := <-done
	return cerr, &r.st, r.err
}

func TestMeshMTLS(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	const (
		reviews     = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
		productpage = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"
	)
	srvSrc := ca.issue(t, reviews)
	server, err := Server(&tlsv3.DownstreamTlsContext{CommonTlsContext: meshContext([]string{"h2", "http/1.1", "istio-peer-exchange", "istio"}),
		RequireClientCertificate: wrapperspb.Bool(true)}, srvSrc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		client  CertSource
		sans    []string
		wantOK  bool
		wantErr string
	}{
		{name: "right SAN", client: ca.issue(t, productpage), sans: []string{reviews}, wantOK: true},
		{name: "any of several SANs", client: ca.issue(t, productpage), sans: []string{"spiffe://cluster.local/ns/x/sa/y", reviews}, wantOK: true},
		{name: "no SAN check, roots only", client: ca.issue(t, productpage), wantOK: true},
		{name: "wrong SAN refused", client: ca.issue(t, productpage), sans: []string{"spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings"}, wantErr: "match none of the allowed subject alt names"},
		{name: "server from another CA refused", client: other.issue(t, productpage), sans: []string{reviews}, wantErr: "certificate signed by unknown authority"},
		{name: "client without certificate refused", client: workload{cert: &tls.Certificate{}, roots: ca.pool}, sans: []string{reviews}, wantErr: "certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := Client(&tlsv3.UpstreamTlsContext{CommonTlsContext: meshContext([]string{"istio-peer-exchange", "istio"}, tc.sans...),
				Sni: "outbound_.9080_._.reviews.bookinfo.svc.cluster.local"}, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			cerr, st, serr := handshake(t, server, client)
			if tc.wantOK {
				if cerr != nil || serr != nil {
					t.Fatalf("handshake: client %v, server %v", cerr, serr)
				}
				if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].URIs[0].String() != productpage {
					t.Errorf("server saw peer %v, want %s", st.PeerCertificates, productpage)
				}
				if st.ServerName != "outbound_.9080_._.reviews.bookinfo.svc.cluster.local" || st.NegotiatedProtocol != "istio-peer-exchange" {
					t.Errorf("SNI %q ALPN %q", st.ServerName, st.NegotiatedProtocol)
				}
				return
			}
			if cerr == nil && serr == nil {
				t.Fatal("handshake succeeded, want refusal")
			}
			msg := ""
			if cerr != nil {
				msg += cerr.Error()
			}
			if serr != nil {
				msg += " / " + serr.Error()
			}
			if !strings.Contains(msg, tc.wantErr) {
				t.Errorf("errors %q, want one containing %q", msg, tc.wantErr)
			}
		})
	}
}

func TestCompileRejectsWhatIsNotImplemented(t *testing.T) {
	ca := newCA(t)
	src := ca.issue(t, "spiffe://cluster.local/ns/a/sa/b")
	pack := func(ctx *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
		a, _ := anypb.New(ctx)
		return &corev3.TransportSocket{Name: TLSSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
	}
	for _, tc := range []struct {
		name string
		ts   *corev3.TransportSocket
		src  CertSource
		want string
	}{
		{"tls_params", pack(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsParams: &tlsv3.TlsParameters{}}}), src, "tls_params"},
		{"unknown SDS secret", pack(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("kubernetes://cert")}}}), src, `SDS secret "kubernetes://cert" is not supported`},
		{"SDS without identity", pack(&tlsv3.UpstreamTlsContext{CommonTlsContext: meshContext(nil)}), nil, "no workload certificate"},
		{"max_session_keys", pack(&tlsv3.UpstreamTlsContext{MaxSessionKeys: wrapperspb.UInt32(1)}), src, "max_session_keys"},
		{"downstream context upstream", func() *corev3.TransportSocket {
			a, _ := anypb.New(&tlsv3.DownstreamTlsContext{})
			return &corev3.TransportSocket{Name: TLSSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
		}(), src, "is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.ts, false, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
