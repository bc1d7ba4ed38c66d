package xds

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/skein-mesh/skein/internal/model"
)

// secret finds Secret ns/name for a credentialName. Key material only
// travels inline in the resources of the proxy that needs it and is never
// logged or put in a warning.
func (g *generator) secret(ns, name string) (model.TLSCredential, bool) {
	return g.pc.Credential(ns, name)
}

// classifyServer files a Gateway server under plaintext HTTP, TLS
// termination (HTTPS with SIMPLE/MUTUAL) or PASSTHROUGH; false when it is
// not supported (with a warning).
func (g *generator) classifyServer(where string, gs gatewayServer, gp *gatewayPort) bool {
	s := gs.server
	proto := model.ParseProtocol(s.GetPort().GetProtocol())
	tls := s.GetTls()
	switch {
	case proto.IsHTTP() && proto != model.ProtocolUnsupported:
		if tls != nil {
			if tls.GetHttpsRedirect() {
				gs.redirect = true
			} else {
				g.warnf("%s: tls on a plaintext %s server is ignored (use protocol HTTPS to terminate TLS)", where, s.GetPort().GetProtocol())
			}
		}
		gp.http = append(gp.http, gs)
		return true
	case proto == model.ProtocolHTTPS || proto == model.ProtocolTLS:
		if tls == nil {
			g.warnf("%s: protocol %s needs tls settings", where, s.GetPort().GetProtocol())
			return false
		}
		switch tls.GetMode() {
		case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL:
			if proto == model.ProtocolTLS {
				g.warnf("%s: TLS termination for protocol TLS (to TCP routes) is not supported yet", where)
				return false
			}
			gp.https = append(gp.https, gs)
		case networking.ServerTLSSettings_PASSTHROUGH:
			gp.passthrough = append(gp.passthrough, gs)
		default:
			g.warnf("%s: tls mode %s is not supported yet", where, tls.GetMode())
			return false
		}
		return true
	}
	g.warnf("%s: protocol %s is not supported yet", where, s.GetPort().GetProtocol())
	return false
}

// gatewayHTTPSRoute names the RDS of one TLS-terminating server, as Istio
// does: https.<port>.<portName>.<gateway>.<namespace>.
func gatewayHTTPSRoute(srv gatewayServer) string {
	ns, name, _ := strings.Cut(srv.gateway, "/")
	return fmt.Sprintf("https.%d.%s.%s.%s", srv.server.GetPort().GetNumber(), srv.server.GetPort().GetName(), name, ns)
}

// httpsChain terminates TLS for one HTTPS server (SIMPLE or MUTUAL) with
// the certificate from files or from the credentialName Secret (inline),
// selected by SNI among the server's hosts.
func (g *generator) httpsChain(port uint32, route string, srv gatewayServer) *listenerv3.FilterChain {
	tls := srv.server.GetTls()
	where := fmt.Sprintf("Gateway %s server port %d", srv.gateway, srv.server.GetPort().GetNumber())
	var cert, key, ca *corev3.DataSource
	if name := tls.GetCredentialName(); name != "" {
		// Istio reads credentialName Secrets in the gateway's own namespace.
		sec, ok := g.secret(g.proxy.Namespace, name)
		if !ok {
			g.warnf("%s: tls.credentialName: Secret %s/%s not found", where, g.proxy.Namespace, name)
			return nil
		}
		cert, key, ca = inlineSource(sec.Cert), inlineSource(sec.Key), inlineSource(sec.CA)
		if ca == nil {
			if cs, ok := g.secret(g.proxy.Namespace, name+"-cacert"); ok {
				ca = inlineSource(cs.CA)
			}
		}
	} else {
		if tls.GetServerCertificate() != "" {
			cert = fileSource(tls.GetServerCertificate())
		}
		if tls.GetPrivateKey() != "" {
			key = fileSource(tls.GetPrivateKey())
		}
		if tls.GetCaCertificates() != "" {
			ca = fileSource(tls.GetCaCertificates())
		}
	}
	if cert == nil || key == nil {
		g.warnf("%s: tls mode %s needs serverCertificate and privateKey, or credentialName", where, tls.GetMode())
		return nil
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:   []string{"h2", "http/1.1"},
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: cert, PrivateKey: key}},
	}}
	if tls.GetMode() == networking.ServerTLSSettings_MUTUAL {
		if ca == nil {
			g.warnf("%s: tls mode MUTUAL needs caCertificates (or a ca.crt in the credential)", where)
			return nil
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: ca, MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames())},
		}
	}
	return &listenerv3.FilterChain{
		Name:             route,
		FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: sniNames(srv.server.GetHosts())},
		TransportSocket:  tlsSocket(ctx),
		Filters:          []*listenerv3.Filter{g.gatewayHCM(port, route)},
	}
}

// sniNames turns server hosts ("ns/host") into SNI names; "*" admits any
// SNI, or none, so no server_names at all.
func sniNames(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if i := strings.IndexByte(h, '/'); i >= 0 {
			h = h[i+1:]
		}
		if h == "*" {
			return nil
		}
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// passthroughChains proxies TLS unterminated by SNI: one chain per
// VirtualService tls route bound to the gateway whose sniHosts the server
// admits, to the route's destination cluster.
func (g *generator) passthroughChains(srv gatewayServer) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	seen := map[string]bool{}
	for _, vsObj := range g.pc.GatewayVirtualServices(srv.gateway) {
		vs := vsObj.Spec.(*networking.VirtualService)
		for i, tr := range vs.GetTls() {
			var snis []string
			for _, m := range tr.GetMatch() {
				if p := m.GetPort(); p != 0 && p != srv.server.GetPort().GetNumber() {
					continue
				}
				if gws := m.GetGateways(); len(gws) > 0 && !containsGateway(g.pc, gws, vsObj.Meta.Namespace, srv.gateway) {
					continue
				}
				for _, h := range m.GetSniHosts() {
					if serverAdmits(srv.server.GetHosts(), vsObj.Meta.Namespace, h) && !seen[h] {
						seen[h] = true
						snis = append(snis, h)
					}
				}
			}
			if len(snis) == 0 || len(tr.GetRoute()) == 0 {
				continue
			}
			if len(tr.GetRoute()) > 1 {
				g.warnf("VirtualService %s/%s tls[%d]: weighted destinations are not supported yet; using the first", vsObj.Meta.Namespace, vsObj.Meta.Name, i)
			}
			cluster, ok := g.tlsDestinationCluster(tr.GetRoute()[0].GetDestination(), vsObj.Meta.Namespace)
			if !ok {
				g.warnf("VirtualService %s/%s tls[%d]: destination %q has no port", vsObj.Meta.Namespace, vsObj.Meta.Name, i, tr.GetRoute()[0].GetDestination().GetHost())
				continue
			}
			sort.Strings(snis)
			tp := &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
			out = append(out, &listenerv3.FilterChain{
				Name:             fmt.Sprintf("%s/%s.tls[%d]", vsObj.Meta.Namespace, vsObj.Meta.Name, i),
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: snis, TransportProtocol: "tls"},
				Filters:          []*listenerv3.Filter{{Name: TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}},
			})
		}
	}
	return out
}

func containsGateway(pc *model.PushContext, refs []string, ns, gateway string) bool {
	for _, r := range refs {
		if pc.QualifyGateway(r, ns) == gateway {
			return true
		}
	}
	return false
}

// tlsDestinationCluster names the outbound cluster of a tls route destination;
// without a port the service must have exactly one.
func (g *generator) tlsDestinationCluster(d *networking.Destination, ns string) (string, bool) {
	host := g.pc.ResolveHost(d.GetHost(), ns)
	port := d.GetPort().GetNumber()
	if port == 0 {
		svc := g.pc.Registry.Service(host)
		if svc == nil || len(svc.Ports) != 1 {
			return "", false
		}
		port = svc.Ports[0].Port
	}
	return OutboundCluster(port, d.GetSubset(), host), true
}

// httpsRedirectRoute answers every request with a 301 to https, for
// servers with tls.httpsRedirect.
func httpsRedirectRoute() *routev3.Route {
	return &routev3.Route{
		Name:  "https-redirect",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
		}},
	}
}
