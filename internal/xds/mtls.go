package xds

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// Names Istio uses for transport sockets, SDS secrets and the endpoint
// metadata that selects mTLS.
const (
	TLSTransportSocket       = "envoy.transport_sockets.tls"
	RawBufferTransportSocket = "envoy.transport_sockets.raw_buffer"
	TLSInspector             = "envoy.filters.listener.tls_inspector"
	// SDSDefaultSecret is the workload certificate, SDSRootCASecret the mesh
	// roots; both come from the local agent over the sds-grpc cluster (the
	// Skein proxy resolves them to its own secret manager).
	SDSDefaultSecret     = "default"
	SDSRootCASecret      = "ROOTCA"
	SDSCluster           = "sds-grpc"
	TransportSocketMatch = "envoy.transport_socket_match"
)

// Istio's ALPN lists: what an inbound sidecar offers, and what a client
// sidecar offers for mesh mTLS.
var (
	inboundALPN = []string{"h2", "http/1.1", "istio-peer-exchange", "istio"}
	meshALPN    = []string{"istio-peer-exchange", "istio"}
)

// inboundChains returns the virtualInbound filter chains of one port. The
// PeerAuthentication in force decides whether they take mTLS, plaintext
// or both.
func (g *generator) inboundChains(ip inboundPort, filters []*listenerv3.Filter) []*listenerv3.FilterChain {
	name := OutboundListener(ip.target) // Istio names inbound chains 0.0.0.0_<port> too
	mode := g.pc.PeerAuthnMode(g.proxy.Namespace, g.proxy.Labels, ip.target)
	if mode == model.MTLSDisable {
		return []*listenerv3.FilterChain{{
			Name:             name,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(ip.target)},
			Filters:          filters,
		}}
	}
	out := []*listenerv3.FilterChain{{
		Name:             name,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(ip.target), TransportProtocol: "tls"},
		Filters:          filters,
		TransportSocket: tlsSocket(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         meshTLSContext(inboundALPN, nil),
			RequireClientCertificate: wrapperspb.Bool(true),
		}),
	}}
	if mode == model.MTLSPermissive {
		out = append(out, &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(ip.target), TransportProtocol: "raw_buffer"},
			Filters:          filters,
		})
	}
	return out
}

// inboundListenerFilters are virtualInbound's listener filters: the TLS
// inspector tells mTLS from plaintext connections for chain selection.
func inboundListenerFilters() []*listenerv3.ListenerFilter {
	return []*listenerv3.ListenerFilter{{
		Name:       TLSInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
	}}
}

// applyUpstreamTLS sets a cluster's transport sockets: auto mTLS to
// endpoints with sidecars, or the DestinationRule's tls settings.
func (g *generator) applyUpstreamTLS(c *clusterv3.Cluster, svc *model.Service, port model.Port, policy *networking.TrafficPolicy) {
	_, subset, _, _ := ParseOutboundCluster(c.Name)
	sni := fmt.Sprintf("outbound_.%d_.%s_.%s", port.Port, subset, svc.Hostname)
	tls := policy.GetTls()
	if tls == nil {
		// Auto mTLS: mTLS to endpoints marked tlsMode=istio, plaintext to
		// the rest. Passthrough clusters have no endpoint metadata to read.
		if svc.MeshExternal || c.GetType() == clusterv3.Cluster_ORIGINAL_DST {
			return
		}
		mtls, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: mtls, TransportSocket: tlsSocket(g.istioMutual(sni, svc, port, nil))},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawBufferSocket()},
		}
		addMetadataExchange(c, port)
		return
	}
	switch tls.GetMode() {
	case networking.ClientTLSSettings_DISABLE:
		return
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if tls.GetSni() != "" {
			sni = tls.GetSni()
		}
		c.TransportSocket = tlsSocket(g.istioMutual(sni, svc, port, tls.GetSubjectAltNames()))
		addMetadataExchange(c, port)
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if ctx := g.originationTLS(c.Name, svc, port, tls); ctx != nil {
			c.TransportSocket = tlsSocket(ctx)
		}
	}
}

// addMetadataExchange gives a mesh-mTLS cluster of a TCP port Istio's
// upstream metadata exchange filter (tcp.go). HTTP ports exchange metadata
// in headers, and their inbound chains expect no exchange frame.
func addMetadataExchange(c *clusterv3.Cluster, port model.Port) {
	if port.Protocol.IsHTTP() {
		return
	}
	c.Filters = append(c.Filters, &clusterv3.Filter{Name: MetadataExchangeFilter, TypedConfig: metadataExchangeConfig()})
}

// istioMutual is the client side of mesh mTLS: the workload certificate,
// the mesh roots, and the destination's service accounts as allowed peers.
func (g *generator) istioMutual(sni string, svc *model.Service, port model.Port, sans []string) *tlsv3.UpstreamTlsContext {
	if len(sans) == 0 {
		sans = g.serviceAccounts(svc, port)
	}
	return &tlsv3.UpstreamTlsContext{CommonTlsContext: meshTLSContext(meshALPN, sanMatchers(sans)), Sni: sni}
}

// serviceAccounts lists the SPIFFE identities of a service port's
// endpoints, sorted; empty when none is known (then only the roots check).
func (g *generator) serviceAccounts(svc *model.Service, port model.Port) []string {
	seen := map[string]bool{}
	var out []string
	for _, ep := range g.pc.Registry.Endpoints(svc.Hostname, port.Port) {
		if ep.ServiceAccount == "" {
			continue
		}
		ns := ep.Namespace
		if ns == "" {
			ns = svc.Namespace
		}
		id := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", g.trustDomain(), ns, ep.ServiceAccount)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// trustDomain is Istio's default: the cluster's DNS domain.
func (g *generator) trustDomain() string {
	if g.pc.Domain == "" {
		return "cluster.local"
	}
	return g.pc.Domain
}

// originationTLS translates DestinationRule tls SIMPLE / MUTUAL: TLS
// origination with CA and client certificate from files or a Secret.
func (g *generator) originationTLS(cluster string, svc *model.Service, port model.Port, tls *networking.ClientTLSSettings) *tlsv3.UpstreamTlsContext {
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}, Sni: tls.GetSni()}
	if port.Protocol.IsHTTP2() {
		ctx.CommonTlsContext.AlpnProtocols = []string{"h2"}
	}
	var ca, cert, key *corev3.DataSource
	if tls.GetCaCertificates() != "" {
		ca = fileSource(tls.GetCaCertificates())
	}
	if tls.GetMode() == networking.ClientTLSSettings_MUTUAL && tls.GetClientCertificate() != "" {
		cert, key = fileSource(tls.GetClientCertificate()), fileSource(tls.GetPrivateKey())
	}
	if name := tls.GetCredentialName(); name != "" {
		sec, ok := g.secret(g.proxy.Namespace, name)
		if !ok {
			g.warnf("cluster %s: trafficPolicy.tls.credentialName: Secret %s/%s not found; TLS origination disabled", cluster, g.proxy.Namespace, name)
			return nil
		}
		if ca == nil && sec.CA != nil {
			ca = inlineSource(sec.CA)
		}
		if tls.GetMode() == networking.ClientTLSSettings_MUTUAL && cert == nil {
			cert, key = inlineSource(sec.Cert), inlineSource(sec.Key)
		}
	}
	if tls.GetMode() == networking.ClientTLSSettings_MUTUAL && cert == nil {
		g.warnf("cluster %s: trafficPolicy.tls mode MUTUAL needs clientCertificate and privateKey (or credentialName)", cluster)
	}
	if cert != nil {
		ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: cert, PrivateKey: key}}
	}
	if tls.GetInsecureSkipVerify().GetValue() {
		return ctx
	}
	vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames())}
	if ca != nil {
		vc.TrustedCa = ca
	} else {
		vc.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
	}
	ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	return ctx
}

// meshTLSContext uses the SDS secrets "default" (own certificate) and
// "ROOTCA" (mesh roots), as Istio's sidecars do.
func meshTLSContext(alpn []string, sans []*tlsv3.SubjectAltNameMatcher) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		AlpnProtocols: alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
			Name: SDSDefaultSecret, SdsConfig: sdsConfigSource(),
		}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SDSRootCASecret, SdsConfig: sdsConfigSource()},
			},
		},
	}
}

// sdsConfigSource points at the local agent's SDS server, as Istio does.
func sdsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:  corev3.ApiVersion_V3,
		InitialFetchTimeout: durationpb.New(0),
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:                   corev3.ApiConfigSource_GRPC,
			TransportApiVersion:       corev3.ApiVersion_V3,
			SetNodeOnFirstMessageOnly: true,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: SDSCluster},
			}}},
		}},
	}
}

// sanMatchers matches SPIFFE identities as URI SANs and anything else as a
// DNS SAN, exactly, as Istio does for subjectAltNames.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.HasPrefix(s, "spiffe://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s},
		}})
	}
	return out
}

func tlsSocket(ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

func rawBufferSocket() *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: RawBufferTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func inlineSource(b []byte) *corev3.DataSource {
	if b == nil {
		return nil
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// endpointMetadata marks endpoints whose workload runs a sidecar, for the
// cluster's transport_socket_matches — unless the workload's
// PeerAuthentication disables mTLS on that port, as Istio's auto mTLS does.
func (g *generator) endpointMetadata(ep *model.Endpoint) *corev3.Metadata {
	if !ep.HasSidecar || g.pc.PeerAuthnMode(ep.Namespace, ep.Labels, ep.Port) == model.MTLSDisable {
		return nil
	}
	s, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{TransportSocketMatch: s}}
}
