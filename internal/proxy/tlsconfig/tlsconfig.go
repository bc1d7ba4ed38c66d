// Package tlsconfig compiles Envoy TLS transport sockets
// (DownstreamTlsContext, UpstreamTlsContext) into crypto/tls
// configurations. Certificates come from files, inline bytes, or the SDS
// secrets "default" (the workload certificate) and "ROOTCA" (the mesh
// roots), which resolve to the proxy's secret manager. Peer verification is
// Envoy's: the chain against the trusted roots plus the subject alt name
// matchers, never the host name (that is what match_typed_subject_alt_names
// is for). Anything else in a TLS context is refused with the field's name.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// CertSource is the workload identity: the current certificate (called at
// every handshake, so rotation never needs a config change) and the roots
// peers are verified against. *secrets.Manager implements it.
type CertSource interface {
	Certificate() (*tls.Certificate, error)
	Roots() *x509.CertPool
}

// SDS secret names the proxy resolves to its CertSource, as Istio's agent does.
const (
	SDSDefault = "default"
	SDSRootCA  = "ROOTCA"
)

// Transport socket names.
const (
	TLSSocket       = "envoy.transport_sockets.tls"
	RawBufferSocket = "envoy.transport_sockets.raw_buffer"
)

var (
	socketFields     = protocheck.Fields(&corev3.TransportSocket{}, "name", "typed_config")
	downstreamFields = protocheck.Fields(&tlsv3.DownstreamTlsContext{}, "common_tls_context", "require_client_certificate")
	upstreamFields   = protocheck.Fields(&tlsv3.UpstreamTlsContext{}, "common_tls_context", "sni")
	commonFields     = protocheck.Fields(&tlsv3.CommonTlsContext{}, "alpn_protocols", "tls_certificates",
		"tls_certificate_sds_secret_configs", "validation_context", "combined_validation_context")
	certFields     = protocheck.Fields(&tlsv3.TlsCertificate{}, "certificate_chain", "private_key")
	sdsFields      = protocheck.Fields(&tlsv3.SdsSecretConfig{}, "name", "sds_config")
	combinedFields = protocheck.Fields(&tlsv3.CommonTlsContext_CombinedCertificateValidationContext{},
		"default_validation_context", "validation_context_sds_secret_config")
	validationFields = protocheck.Fields(&tlsv3.CertificateValidationContext{}, "trusted_ca",
		"match_typed_subject_alt_names", "system_root_certs")
	sanFields     = protocheck.Fields(&tlsv3.SubjectAltNameMatcher{}, "san_type", "matcher")
	matcherFields = protocheck.Fields(&matcherv3.StringMatcher{}, "exact", "prefix", "suffix", "contains", "ignore_case")
	sourceFields  = protocheck.Fields(&corev3.DataSource{}, "filename", "inline_bytes", "inline_string")
)

// Socket is a compiled transport socket: TLS when Client/Server is set,
// plaintext otherwise.
type Socket struct {
	Name string
	// Upstream is set for an UpstreamTlsContext, Downstream for a
	// DownstreamTlsContext.
	Upstream   *tls.Config
	Downstream *tls.Config
}

// IsTLS reports whether the socket encrypts.
func (s *Socket) IsTLS() bool { return s != nil && (s.Upstream != nil || s.Downstream != nil) }

// Compile reads a transport socket. downstream selects which TLS context
// type is expected. src may be nil when the proxy has no workload identity;
// then the SDS secrets cannot be used.
func Compile(ts *corev3.TransportSocket, downstream bool, src CertSource) (*Socket, error) {
	if ts == nil {
		return &Socket{Name: RawBufferSocket}, nil
	}
	if err := socketFields.Check(ts); err != nil {
		return nil, err
	}
	tc := ts.GetTypedConfig()
	switch {
	case tc == nil:
		return nil, fmt.Errorf("transport socket %q has no typed_config", ts.GetName())
	case tc.MessageIs(&rawbufferv3.RawBuffer{}):
		return &Socket{Name: ts.GetName()}, nil
	case downstream && tc.MessageIs(&tlsv3.DownstreamTlsContext{}):
		var ctx tlsv3.DownstreamTlsContext
		if err := confparse.Unmarshal(tc, &ctx); err != nil {
			return nil, err
		}
		cfg, err := Server(&ctx, src)
		if err != nil {
			return nil, fmt.Errorf("DownstreamTlsContext: %v", err)
		}
		return &Socket{Name: ts.GetName(), Downstream: cfg}, nil
	case !downstream && tc.MessageIs(&tlsv3.UpstreamTlsContext{}):
		var ctx tlsv3.UpstreamTlsContext
		if err := confparse.Unmarshal(tc, &ctx); err != nil {
			return nil, err
		}
		cfg, err := Client(&ctx, src)
		if err != nil {
			return nil, fmt.Errorf("UpstreamTlsContext: %v", err)
		}
		return &Socket{Name: ts.GetName(), Upstream: cfg}, nil
	}
	return nil, fmt.Errorf("transport socket %q (%s) is not supported", ts.GetName(), tc.GetTypeUrl())
}

// Server compiles a DownstreamTlsContext for terminating TLS.
func Server(ctx *tlsv3.DownstreamTlsContext, src CertSource) (*tls.Config, error) {
	if err := downstreamFields.Check(ctx); err != nil {
		return nil, err
	}
	c, err := compileCommon(ctx.GetCommonTlsContext(), src)
	if err != nil {
		return nil, fmt.Errorf("common_tls_context: %v", err)
	}
	if c.getCert == nil {
		return nil, errors.New("common_tls_context: a server needs a certificate (tls_certificates or tls_certificate_sds_secret_configs)")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: c.alpn,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.getCert()
		},
	}
	switch {
	case ctx.GetRequireClientCertificate().GetValue():
		cfg.ClientAuth = tls.RequireAnyClientCert
	case c.verify != nil:
		cfg.ClientAuth = tls.RequestClientCert
	}
	if c.verify != nil {
		verify := c.verify
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil // no certificate offered and none required
			}
			return verify(raw)
		}
	} else if ctx.GetRequireClientCertificate().GetValue() {
		return nil, errors.New("require_client_certificate needs a validation context to verify clients against")
	}
	return cfg, nil
}

// Client compiles an UpstreamTlsContext for originating TLS.
func Client(ctx *tlsv3.UpstreamTlsContext, src CertSource) (*tls.Config, error) {
	if err := upstreamFields.Check(ctx); err != nil {
		return nil, err
	}
	c, err := compileCommon(ctx.GetCommonTlsContext(), src)
	if err != nil {
		return nil, fmt.Errorf("common_tls_context: %v", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: ctx.GetSni(),
		NextProtos: c.alpn,
		// Envoy checks the chain and the SAN matchers, not the SNI against
		// the certificate: done in VerifyPeerCertificate.
		InsecureSkipVerify: true,
	}
	if c.getCert != nil {
		get := c.getCert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return get() }
	}
	if c.verify != nil {
		verify := c.verify
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return verify(raw) }
	}
	return cfg, nil
}

// common is a compiled CommonTlsContext.
type common struct {
	alpn    []string
	getCert func() (*tls.Certificate, error) // nil: no own certificate
	verify  func(raw [][]byte) error         // nil: peers are not verified
}

func compileCommon(ctx *tlsv3.CommonTlsContext, src CertSource) (*common, error) {
	if ctx == nil {
		return &common{}, nil
	}
	if err := commonFields.Check(ctx); err != nil {
		return nil, err
	}
	c := &common{alpn: ctx.GetAlpnProtocols()}
	certs, sdsCerts := ctx.GetTlsCertificates(), ctx.GetTlsCertificateSdsSecretConfigs()
	if len(certs)+len(sdsCerts) > 1 {
		return nil, errors.New("only one certificate (tls_certificates or tls_certificate_sds_secret_configs) is supported")
	}
	if len(certs) == 1 {
		cert, err := staticCert(certs[0])
		if err != nil {
			return nil, fmt.Errorf("tls_certificates[0]: %v", err)
		}
		c.getCert = func() (*tls.Certificate, error) { return cert, nil }
	}
	if len(sdsCerts) == 1 {
		if err := checkSDS(sdsCerts[0], SDSDefault, src); err != nil {
			return nil, fmt.Errorf("tls_certificate_sds_secret_configs[0]: %v", err)
		}
		c.getCert = src.Certificate
	}
	var (
		vc    *tlsv3.CertificateValidationContext
		roots func() *x509.CertPool
		where = "validation_context"
	)
	switch v := ctx.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		where = "combined_validation_context"
		if err := combinedFields.Check(v.CombinedValidationContext); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		if err := checkSDS(v.CombinedValidationContext.GetValidationContextSdsSecretConfig(), SDSRootCA, src); err != nil {
			return nil, fmt.Errorf("%s.validation_context_sds_secret_config: %v", where, err)
		}
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
		if vc == nil {
			vc = &tlsv3.CertificateValidationContext{}
		}
		roots = src.Roots
		where += ".default_validation_context"
	default:
		return nil, fmt.Errorf("validation context type %T is not supported", v)
	}
	if vc == nil {
		return c, nil
	}
	if err := validationFields.Check(vc); err != nil {
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	switch {
	case vc.GetTrustedCa() != nil:
		if roots != nil {
			return nil, fmt.Errorf("%s: trusted_ca and the ROOTCA secret both give roots", where)
		}
		pem, err := readSource(vc.GetTrustedCa())
		if err != nil {
			return nil, fmt.Errorf("%s.trusted_ca: %v", where, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.trusted_ca: no PEM certificate found", where)
		}
		roots = func() *x509.CertPool { return pool }
	case vc.GetSystemRootCerts() != nil:
		roots = func() *x509.CertPool { return nil } // nil pool: the system roots
	}
	sans, err := compileSANs(vc.GetMatchTypedSubjectAltNames())
	if err != nil {
		return nil, fmt.Errorf("%s.match_typed_subject_alt_names%v", where, err)
	}
	if roots == nil && len(sans) == 0 {
		return c, nil // Envoy: a validation context without roots verifies nothing
	}
	c.verify = func(raw [][]byte) error { return verifyPeer(raw, roots, sans) }
	return c, nil
}

// checkSDS accepts the two secrets the local agent serves.
func checkSDS(s *tlsv3.SdsSecretConfig, want string, src CertSource) error {
	if err := sdsFields.Check(s); err != nil {
		return err
	}
	if s.GetName() != want {
		return fmt.Errorf("SDS secret %q is not supported here (only %q)", s.GetName(), want)
	}
	if src == nil {
		return fmt.Errorf("SDS secret %q: this proxy has no workload certificate", want)
	}
	return nil
}

func staticCert(tc *tlsv3.TlsCertificate) (*tls.Certificate, error) {
	if err := certFields.Check(tc); err != nil {
		return nil, err
	}
	chain, err := readSource(tc.GetCertificateChain())
	if err != nil {
		return nil, fmt.Errorf("certificate_chain: %v", err)
	}
	key, err := readSource(tc.GetPrivateKey())
	if err != nil {
		return nil, fmt.Errorf("private_key: %v", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		// The error never quotes key material.
		return nil, fmt.Errorf("certificate_chain/private_key: %v", err)
	}
	return &cert, nil
}

func readSource(ds *corev3.DataSource) ([]byte, error) {
	if ds == nil {
		return nil, errors.New("missing")
	}
	if err := sourceFields.Check(ds); err != nil {
		return nil, err
	}
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		return os.ReadFile(s.Filename)
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	}
	return nil, errors.New("no data source set")
}

// sanMatcher is one compiled match_typed_subject_alt_names entry.
type sanMatcher struct {
	typ   tlsv3.SubjectAltNameMatcher_SanType
	match func(string) bool
	exact string // the value of an exact matcher, for wildcard certificates
}

func compileSANs(in []*tlsv3.SubjectAltNameMatcher) ([]sanMatcher, error) {
	var out []sanMatcher
	for i, m := range in {
		if err := sanFields.Check(m); err != nil {
			return nil, fmt.Errorf("[%d]: %v", i, err)
		}
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_URI, tlsv3.SubjectAltNameMatcher_DNS:
		default:
			return nil, fmt.Errorf("[%d]: san_type %s is not supported (URI and DNS are)", i, m.GetSanType())
		}
		sm := m.GetMatcher()
		if err := matcherFields.Check(sm); err != nil {
			return nil, fmt.Errorf("[%d].matcher: %v", i, err)
		}
		fold := func(s string) string { return s }
		if sm.GetIgnoreCase() {
			fold = strings.ToLower
		}
		var match func(string) bool
		exact := ""
		switch p := sm.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			exact = p.Exact
			want := fold(p.Exact)
			match = func(s string) bool { return fold(s) == want }
		case *matcherv3.StringMatcher_Prefix:
			want := fold(p.Prefix)
			match = func(s string) bool { return strings.HasPrefix(fold(s), want) }
		case *matcherv3.StringMatcher_Suffix:
			want := fold(p.Suffix)
			match = func(s string) bool { return strings.HasSuffix(fold(s), want) }
		case *matcherv3.StringMatcher_Contains:
			want := fold(p.Contains)
			match = func(s string) bool { return strings.Contains(fold(s), want) }
		default:
			return nil, fmt.Errorf("[%d].matcher: a pattern (exact, prefix, suffix, contains) is required", i)
		}
		out = append(out, sanMatcher{typ: m.GetSanType(), match: match, exact: exact})
	}
	return out, nil
}

// verifyPeer checks the peer's chain against roots (when given) and that
// one of its SANs satisfies one matcher (when any).
func verifyPeer(raw [][]byte, roots func() *x509.CertPool, sans []sanMatcher) error {
	if len(raw) == 0 {
		return errors.New("peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("peer certificate: %v", err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	if roots != nil {
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("peer certificate: %v", err)
		}
	}
	if len(sans) == 0 {
		return nil
	}
	for _, m := range sans {
		switch m.typ {
		case tlsv3.SubjectAltNameMatcher_URI:
			for _, u := range leaf.URIs {
				if m.match(u.String()) {
					return nil
				}
			}
		case tlsv3.SubjectAltNameMatcher_DNS:
			for _, d := range leaf.DNSNames {
				if m.match(d) || wildcardCovers(d, m) {
					return nil
				}
			}
		}
	}
	var have []string
	for _, u := range leaf.URIs {
		have = append(have, u.String())
	}
	have = append(have, leaf.DNSNames...)
	return fmt.Errorf("peer certificate SANs %q match none of the allowed subject alt names", have)
}

// wildcardCovers lets a "*.example.com" certificate satisfy an exact
// matcher for one host of that domain, as Envoy's DNS SAN matching does.
func wildcardCovers(certName string, m sanMatcher) bool {
	if m.exact == "" || !strings.HasPrefix(certName, "*.") {
		return false
	}
	i := strings.IndexByte(m.exact, '.')
	return i > 0 && strings.EqualFold(m.exact[i+1:], certName[2:])
}
