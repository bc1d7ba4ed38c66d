package xds

import (
	"fmt"
	"net/url"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"
)

// buildJWTAuthn translates the RequestAuthentications applying to the
// proxy into one jwt_authn config, as Istio does: a provider per jwtRule,
// and one requirement "any provider, or no token at all" — a request
// without a token passes authentication (AuthorizationPolicy may still
// require a request principal), a present but invalid token is a 401.
// nil when no RequestAuthentication applies.
func (g *generator) buildJWTAuthn() *jwtv3.JwtAuthentication {
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var any []*jwtv3.JwtRequirement
	for _, o := range g.pc.RequestAuthentications(g.proxy.Namespace) {
		ra := o.Spec.(*security.RequestAuthentication)
		if !g.selectsWorkload(o, ra.GetSelector(), ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0) {
			continue
		}
		for i, r := range ra.GetJwtRules() {
			field := fmt.Sprintf("RequestAuthentication %s/%s spec.jwtRules[%d]", o.Meta.Namespace, o.Meta.Name, i)
			p := g.jwtProvider(field, r)
			if p == nil {
				continue
			}
			name := r.GetIssuer()
			for n := 1; cfg.Providers[name] != nil; n++ {
				name = fmt.Sprintf("%s-%d", r.GetIssuer(), n)
			}
			cfg.Providers[name] = p
			any = append(any, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
		}
	}
	if len(any) == 0 {
		return nil
	}
	any = append(any, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: any}}}},
	}}
	return cfg
}

func (g *generator) jwtProvider(field string, r *security.JWTRule) *jwtv3.JwtProvider {
	p := &jwtv3.JwtProvider{
		Issuer:               r.GetIssuer(),
		Audiences:            r.GetAudiences(),
		Forward:              r.GetForwardOriginalToken(),
		FromParams:           r.GetFromParams(),
		ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
		PayloadInMetadata:    JWTPayloadKey,
	}
	for _, h := range r.GetFromHeaders() {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for _, c := range r.GetOutputClaimToHeaders() {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
	}
	if len(r.GetFromCookies()) > 0 {
		g.warnf("%s: fromCookies is not supported; tokens are read from headers and params only", field)
	}
	if len(r.GetSpaceDelimitedClaims()) > 0 {
		g.warnf("%s: spaceDelimitedClaims is not supported", field)
	}
	switch {
	case r.GetJwks() != "":
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: r.GetJwks()}}}
	case r.GetJwksUri() != "":
		u, err := url.Parse(r.GetJwksUri())
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			g.warnf("%s: jwksUri %q is not an http(s) URL; rule ignored", field, r.GetJwksUri())
			return nil
		}
		timeout := durationpb.New(5e9)
		if t := r.GetTimeout(); t != nil {
			timeout = durationpb.New(t.AsDuration())
		}
		// The proxy fetches the URI itself; the cluster names the service
		// as Istio would when the JWKS host is in the mesh.
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
			HttpUri: &corev3.HttpUri{
				Uri:              r.GetJwksUri(),
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: jwksCluster(u)},
				Timeout:          timeout,
			},
			CacheDuration: durationpb.New(5 * 60e9),
		}}
	default:
		// Istio would discover the key set from the issuer's OpenID
		// configuration; there is no discovery here.
		g.warnf("%s: neither jwks nor jwksUri is set (OpenID discovery of %q is not supported); rule ignored", field, r.GetIssuer())
		return nil
	}
	return p
}

func jwksCluster(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return "outbound|" + port + "||" + u.Hostname()
}
