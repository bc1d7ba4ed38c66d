package cluster

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var (
	hashPolicyFields = protocheck.Fields(&routev3.RouteAction_HashPolicy{},
		"header", "cookie", "connection_properties", "query_parameter", "terminal")
	hashHeaderFields = protocheck.Fields(&routev3.RouteAction_HashPolicy_Header{}, "header_name")
	hashCookieFields = protocheck.Fields(&routev3.RouteAction_HashPolicy_Cookie{}, "name", "ttl", "path")
	hashConnFields   = protocheck.Fields(&routev3.RouteAction_HashPolicy_ConnectionProperties{}, "source_ip")
	hashQueryFields  = protocheck.Fields(&routev3.RouteAction_HashPolicy_QueryParameter{}, "name")
)

// CheckHashPolicies rejects route hash_policy entries the proxy does not
// implement (filter_state, header regex rewrites, cookie attributes).
func CheckHashPolicies(ps []*routev3.RouteAction_HashPolicy) error {
	for i, p := range ps {
		err := hashPolicyFields.Check(p)
		if err == nil {
			switch {
			case p.GetHeader() != nil:
				err = hashHeaderFields.Check(p.GetHeader())
			case p.GetCookie() != nil:
				err = hashCookieFields.Check(p.GetCookie())
			case p.GetConnectionProperties() != nil:
				err = hashConnFields.Check(p.GetConnectionProperties())
			case p.GetQueryParameter() != nil:
				err = hashQueryFields.Check(p.GetQueryParameter())
			default:
				err = fmt.Errorf("a hash policy needs header, cookie, connection_properties or query_parameter")
			}
		}
		if err != nil {
			return fmt.Errorf("hash_policy[%d]: %v", i, err)
		}
	}
	return nil
}

// RequestHash computes a request's hash from the route's hash policies as
// Envoy does: each policy that yields a value is folded in (rotate, xor)
// until a terminal one matches. hasHash is false when none yielded one.
// setCookie is a Set-Cookie value to add to the response: a cookie policy
// with a ttl generates its cookie when the request lacks it, so the client
// sticks to the same host from then on.
func RequestHash(ps []*routev3.RouteAction_HashPolicy, r *http.Request) (hash uint64, hasHash bool, setCookie string) {
	for _, p := range ps {
		var h uint64
		found := false
		switch {
		case p.GetHeader() != nil:
			if vs := r.Header.Values(p.GetHeader().GetHeaderName()); len(vs) > 0 {
				h, found = HashString(strings.Join(vs, ",")), true
			} else if strings.EqualFold(p.GetHeader().GetHeaderName(), ":authority") {
				h, found = HashString(r.Host), true
			}
		case p.GetCookie() != nil:
			c := p.GetCookie()
			if ck, err := r.Cookie(c.GetName()); err == nil {
				h, found = HashString(ck.Value), true
			} else if c.GetTtl() != nil {
				value := generatedCookie(r)
				setCookie = cookieHeader(c, value)
				h, found = HashString(value), true
			}
		case p.GetConnectionProperties().GetSourceIp():
			if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				h, found = HashString(ip), true
			}
		case p.GetQueryParameter() != nil:
			if vs, ok := r.URL.Query()[p.GetQueryParameter().GetName()]; ok && len(vs) > 0 {
				h, found = HashString(vs[0]), true
			}
		}
		if !found {
			continue
		}
		hash = (hash<<1 | hash>>63) ^ h
		hasHash = true
		if p.GetTerminal() {
			break
		}
	}
	return hash, hasHash, setCookie
}

// generatedCookie is Envoy's choice: a hash of the downstream connection's
// addresses, so requests racing on one connection get the same cookie.
func generatedCookie(r *http.Request) string {
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	return strconv.FormatUint(HashString(r.RemoteAddr+local), 16)
}

func cookieHeader(c *routev3.RouteAction_HashPolicy_Cookie, value string) string {
	var b strings.Builder
	b.WriteString(c.GetName() + `="` + value + `"`)
	if ttl := c.GetTtl().AsDuration(); ttl > 0 {
		b.WriteString("; Max-Age=" + strconv.FormatInt(int64(ttl.Seconds()), 10))
	}
	if c.GetPath() != "" {
		b.WriteString("; Path=" + c.GetPath())
	}
	b.WriteString("; HttpOnly")
	return b.String()
}
