// Package jwtauthn is the envoy.filters.http.jwt_authn HTTP filter: it
// finds JSON Web Tokens in headers or query parameters, verifies them
// against each provider's issuer, audiences, validity window and key set
// (inline, or fetched from a jwks_uri and cached), and answers 401 with
// Envoy's messages when a present token is invalid. A verified payload is
// written to the request's dynamic metadata for the RBAC filter, and
// copied to headers when configured.
package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// Name is the canonical filter name, also the dynamic metadata namespace
// the verified payloads are written under.
const Name = "envoy.filters.http.jwt_authn"

var (
	configFields   = protocheck.Fields(&jwtv3.JwtAuthentication{}, "providers", "rules", "bypass_cors_preflight")
	providerFields = protocheck.Fields(&jwtv3.JwtProvider{}, "issuer", "audiences", "forward", "from_headers", "from_params",
		"forward_payload_header", "pad_forward_payload_header", "payload_in_metadata", "clock_skew_seconds",
		"claim_to_headers", "remote_jwks", "local_jwks")
	remoteFields      = protocheck.Fields(&jwtv3.RemoteJwks{}, "http_uri", "cache_duration")
	headerFields      = protocheck.Fields(&jwtv3.JwtHeader{}, "name", "value_prefix")
	claimHeaderFields = protocheck.Fields(&jwtv3.JwtClaimToHeader{}, "header_name", "claim_name")
	ruleFields        = protocheck.Fields(&jwtv3.RequirementRule{}, "match", "requires")
	routeMatchFields  = protocheck.Fields(&routev3.RouteMatch{}, "prefix", "path")
	requirementFields = protocheck.Fields(&jwtv3.JwtRequirement{}, "provider_name", "requires_any", "allow_missing", "allow_missing_or_failed")
)

// Envoy's failure messages, sent as the 401 body.
const (
	errMissing     = "Jwt is missing"
	errMalformed   = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
	errBadFormat   = "Jwt header or payload is an invalid JSON"
	errIssuer      = "Jwt issuer is not configured"
	errExpired     = "Jwt is expired"
	errNotYetValid = "Jwt not yet valid"
	errAudience    = "Audiences in Jwt are not allowed"
	errNoKey       = "Jwks doesn't have key to match kid or alg from Jwt"
	errVerify      = "Jwt verification fails"
	errJWKSFetch   = "Jwks remote fetch is failed"
)

// Options configure how filters are built; zero values are fine.
type Options struct {
	Logger *slog.Logger
	Client *http.Client     // for jwks_uri fetches; default: no proxy, 5 s timeout
	Now    func() time.Time // the clock, for tests
}

// Register adds the filter to reg.
func Register(reg *filters.Registry, opts Options) {
	reg.Register(Name, &jwtv3.JwtAuthentication{}, func(config *anypb.Any) (filters.HTTPFilter, error) {
		var cfg jwtv3.JwtAuthentication
		if err := confparse.Unmarshal(config, &cfg); err != nil {
			return nil, err
		}
		return New(&cfg, opts)
	})
}

// Filter is a compiled JwtAuthentication.
type Filter struct {
	providers  map[string]*provider
	rules      []rule
	bypassCORS bool
	now        func() time.Time
	log        *slog.Logger
}

type location struct {
	header string // canonical header name; "" for a query parameter
	prefix string
	param  string
}

type provider struct {
	name           string
	issuer         string
	audiences      map[string]bool
	locations      []location
	forward        bool
	payloadHeader  string
	padPayload     bool
	payloadKey     string
	skew           time.Duration
	claimToHeaders []claimHeader
	keys           keySource
}

type claimHeader struct{ header, claim string }

type rule struct {
	prefix, path string
	req          requirement
}

// requirement is a compiled JwtRequirement: a set of providers any of which
// may verify the token, and what to do when no token is present or none
// verifies.
type requirement struct {
	providers     []*provider
	allowMissing  bool
	allowFailed   bool // allow_missing_or_failed
	noRequirement bool
}

// New compiles a JwtAuthentication config.
func New(cfg *jwtv3.JwtAuthentication, opts Options) (*Filter, error) {
	if err := configFields.Check(cfg); err != nil {
		return nil, err
	}
	f := &Filter{providers: map[string]*provider{}, bypassCORS: cfg.GetBypassCorsPreflight(), now: opts.Now, log: opts.Logger}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	}
	for name, pc := range cfg.GetProviders() {
		p, err := compileProvider(name, pc, client, f)
		if err != nil {
			return nil, fmt.Errorf("providers[%q]: %v", name, err)
		}
		f.providers[name] = p
	}
	for i, r := range cfg.GetRules() {
		cr, err := f.compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %v", i, err)
		}
		f.rules = append(f.rules, cr)
	}
	return f, nil
}

func compileProvider(name string, pc *jwtv3.JwtProvider, client *http.Client, f *Filter) (*provider, error) {
	if err := providerFields.Check(pc); err != nil {
		return nil, err
	}
	p := &provider{
		name: name, issuer: pc.GetIssuer(), forward: pc.GetForward(),
		payloadHeader: pc.GetForwardPayloadHeader(), padPayload: pc.GetPadForwardPayloadHeader(),
		payloadKey: pc.GetPayloadInMetadata(), skew: time.Duration(pc.GetClockSkewSeconds()) * time.Second,
	}
	if pc.GetClockSkewSeconds() == 0 {
		p.skew = 60 * time.Second // Envoy's default
	}
	if len(pc.GetAudiences()) > 0 {
		p.audiences = map[string]bool{}
		for _, a := range pc.GetAudiences() {
			p.audiences[a] = true
		}
	}
	for i, h := range pc.GetFromHeaders() {
		if err := headerFields.Check(h); err != nil {
			return nil, fmt.Errorf("from_headers[%d]: %v", i, err)
		}
		if h.GetName() == "" {
			return nil, fmt.Errorf("from_headers[%d]: name is required", i)
		}
		p.locations = append(p.locations, location{header: http.CanonicalHeaderKey(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for _, q := range pc.GetFromParams() {
		p.locations = append(p.locations, location{param: q})
	}
	if len(p.locations) == 0 {
		// Envoy's defaults.
		p.locations = []location{{header: "Authorization", prefix: "Bearer "}, {param: "access_token"}}
	}
	for i, c := range pc.GetClaimToHeaders() {
		if err := claimHeaderFields.Check(c); err != nil {
			return nil, fmt.Errorf("claim_to_headers[%d]: %v", i, err)
		}
		if c.GetHeaderName() == "" || c.GetClaimName() == "" {
			return nil, fmt.Errorf("claim_to_headers[%d]: header_name and claim_name are required", i)
		}
		p.claimToHeaders = append(p.claimToHeaders, claimHeader{header: c.GetHeaderName(), claim: c.GetClaimName()})
	}
	switch src := pc.GetJwksSourceSpecifier().(type) {
	case *jwtv3.JwtProvider_LocalJwks:
		if src.LocalJwks.GetFilename() != "" || src.LocalJwks.GetInlineBytes() != nil || src.LocalJwks.GetEnvironmentVariable() != "" {
			return nil, fmt.Errorf("local_jwks: only inline_string is supported")
		}
		set, err := parseJWKS([]byte(src.LocalJwks.GetInlineString()))
		if err != nil {
			return nil, fmt.Errorf("local_jwks: %v", err)
		}
		p.keys = staticKeys{set}
	case *jwtv3.JwtProvider_RemoteJwks:
		rj := src.RemoteJwks
		if err := remoteFields.Check(rj); err != nil {
			return nil, fmt.Errorf("remote_jwks: %v", err)
		}
		uri := rj.GetHttpUri().GetUri()
		if !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") {
			return nil, fmt.Errorf("remote_jwks.http_uri.uri %q must be an http(s) URL", uri)
		}
		rk := &remoteKeys{uri: uri, timeout: 5 * time.Second, cacheDuration: 10 * time.Minute, minRefetch: 5 * time.Second,
			client: client, now: f.now, log: f.log}
		if t := rj.GetHttpUri().GetTimeout(); t != nil && t.AsDuration() > 0 {
			rk.timeout = t.AsDuration()
		}
		if d := rj.GetCacheDuration(); d != nil && d.AsDuration() > 0 {
			rk.cacheDuration = d.AsDuration()
		}
		p.keys = rk
	default:
		return nil, fmt.Errorf("one of local_jwks or remote_jwks is required")
	}
	return p, nil
}

func (f *Filter) compileRule(r *jwtv3.RequirementRule) (rule, error) {
	if err := ruleFields.Check(r); err != nil {
		return rule{}, err
	}
	m := r.GetMatch()
	if err := routeMatchFields.Check(m); err != nil {
		return rule{}, fmt.Errorf("match: %v", err)
	}
	cr := rule{prefix: m.GetPrefix(), path: m.GetPath()}
	if cr.path == "" && m.GetPathSpecifier() == nil {
		return rule{}, fmt.Errorf("match: prefix or path is required")
	}
	if r.GetRequires() == nil {
		cr.req.noRequirement = true
		return cr, nil
	}
	if err := f.compileRequirement(r.GetRequires(), &cr.req, true); err != nil {
		return rule{}, fmt.Errorf("requires: %v", err)
	}
	return cr, nil
}

func (f *Filter) compileRequirement(r *jwtv3.JwtRequirement, out *requirement, top bool) error {
	if err := requirementFields.Check(r); err != nil {
		return err
	}
	switch t := r.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		p, ok := f.providers[t.ProviderName]
		if !ok {
			return fmt.Errorf("provider_name %q is not among providers", t.ProviderName)
		}
		out.providers = append(out.providers, p)
	case *jwtv3.JwtRequirement_AllowMissing:
		out.allowMissing = true
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		out.allowMissing, out.allowFailed = true, true
	case *jwtv3.JwtRequirement_RequiresAny:
		if !top {
			return fmt.Errorf("nested requires_any is not supported")
		}
		for i, sub := range t.RequiresAny.GetRequirements() {
			if err := f.compileRequirement(sub, out, false); err != nil {
				return fmt.Errorf("requires_any[%d]: %v", i, err)
			}
		}
	default:
		return fmt.Errorf("requirement type is required")
	}
	return nil
}

// OnRequest verifies the request's tokens as the first matching rule
// requires.
func (f *Filter) OnRequest(req *filters.Request) *filters.LocalReply {
	r := req.HTTP
	if f.bypassCORS && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return nil
	}
	var rq *requirement
	for i := range f.rules {
		ru := &f.rules[i]
		if ru.path != "" && r.URL.Path == ru.path || ru.path == "" && strings.HasPrefix(r.URL.Path, ru.prefix) {
			rq = &ru.req
			break
		}
	}
	if rq == nil || rq.noRequirement {
		return nil
	}
	found := false
	failure := ""
	for _, p := range rq.providers {
		for _, loc := range p.locations {
			token, ok := extract(r, loc)
			if !ok {
				continue
			}
			found = true
			msg := f.verify(req, p, loc, token)
			if msg == "" {
				return nil
			}
			// A provider whose issuer matched explains the failure better
			// than one that does not know the issuer.
			if failure == "" || failure == errIssuer {
				failure = msg
			}
		}
	}
	switch {
	case !found && rq.allowMissing:
		return nil
	case found && rq.allowFailed:
		return nil
	case !found:
		failure = errMissing
	}
	return unauthorized(r, failure)
}

// unauthorized is Envoy's 401 with the RFC 6750 challenge.
func unauthorized(r *http.Request, msg string) *filters.LocalReply {
	challenge := fmt.Sprintf("Bearer realm=\"http://%s%s\"", r.Host, r.URL.Path)
	if msg != errMissing {
		challenge += ", error=\"invalid_token\""
	}
	h := http.Header{}
	h.Set("WWW-Authenticate", challenge)
	return &filters.LocalReply{Status: http.StatusUnauthorized, Body: msg, Headers: h}
}

func extract(r *http.Request, loc location) (string, bool) {
	if loc.header == "" {
		v := r.URL.Query().Get(loc.param)
		return v, v != ""
	}
	v := r.Header.Get(loc.header)
	if v == "" {
		return "", false
	}
	if loc.prefix != "" {
		i := strings.Index(v, loc.prefix)
		if i < 0 {
			return "", false
		}
		v = v[i+len(loc.prefix):]
		// Envoy takes the token up to the next comma or space.
		if j := strings.IndexAny(v, ", "); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512,
}

// verify checks token for provider p, in Envoy's order: format, issuer,
// validity window, audiences, key, signature. On success it records the
// payload and applies the header outputs; it returns "" or Envoy's message.
func (f *Filter) verify(req *filters.Request, p *provider, loc location, token string) string {
	if strings.Count(token, ".") != 2 {
		return errMalformed
	}
	jws, err := jose.ParseSigned(token, algorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return errBadFormat
	}
	raw := jws.UnsafePayloadWithoutVerification()
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return errBadFormat
	}
	if iss, _ := claims["iss"].(string); p.issuer != "" && iss != p.issuer {
		return errIssuer
	}
	now := f.now()
	if exp, ok := claims["exp"].(float64); ok && now.After(unixTime(exp).Add(p.skew)) {
		return errExpired
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(p.skew).Before(unixTime(nbf)) {
		return errNotYetValid
	}
	if p.audiences != nil && !audienceAllowed(claims["aud"], p.audiences) {
		return errAudience
	}
	if msg := f.checkSignature(req, p, jws); msg != "" {
		return msg
	}
	f.output(req, p, loc, token, claims)
	return ""
}

func (f *Filter) checkSignature(req *filters.Request, p *provider, jws *jose.JSONWebSignature) string {
	hdr := jws.Signatures[0].Header
	for attempt := 0; attempt < 2; attempt++ {
		set, err := p.keys.keys(req.HTTP.Context(), attempt == 1)
		if err != nil {
			return errJWKSFetch
		}
		candidates := 0
		for i := range set.Keys {
			k := &set.Keys[i]
			if hdr.KeyID != "" && k.KeyID != "" && k.KeyID != hdr.KeyID {
				continue
			}
			if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
				continue
			}
			candidates++
			if _, err := jws.Verify(k.Key); err == nil {
				return ""
			}
		}
		if candidates > 0 {
			return errVerify
		}
		// No key for this kid: the issuer may have rotated keys; refetch once.
	}
	return errNoKey
}

func unixTime(f float64) time.Time {
	return time.Unix(int64(f), 0)
}

func audienceAllowed(aud any, allowed map[string]bool) bool {
	switch a := aud.(type) {
	case string:
		return allowed[a]
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && allowed[s] {
				return true
			}
		}
	}
	return false
}

// output applies a verified token's effects: metadata, headers, and
// removal of the token unless it is to be forwarded.
func (f *Filter) output(req *filters.Request, p *provider, loc location, token string, claims map[string]any) {
	r := req.HTTP
	if p.payloadKey != "" {
		req.SetMetadata(Name, p.payloadKey, claims)
	}
	if p.payloadHeader != "" {
		payload := strings.Split(token, ".")[1]
		if p.padPayload {
			if b, err := base64.RawURLEncoding.DecodeString(payload); err == nil {
				payload = base64.URLEncoding.EncodeToString(b)
			}
		}
		r.Header.Set(p.payloadHeader, payload)
	}
	for _, ch := range p.claimToHeaders {
		if v, ok := claimString(claims, ch.claim); ok {
			r.Header.Set(ch.header, v)
		} else {
			r.Header.Del(ch.header)
		}
	}
	if !p.forward && loc.header != "" {
		r.Header.Del(loc.header)
	}
}

// claimString finds a (dot-separated, nested) claim and renders it as
// Envoy does: strings as is, numbers and booleans as text, lists of
// strings joined with commas.
func claimString(claims map[string]any, name string) (string, bool) {
	var v any = claims
	for _, k := range strings.Split(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[k]; !ok {
			return "", false
		}
	}
	switch t := v.(type) {
	case string:
		return t, true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(t), true
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}
