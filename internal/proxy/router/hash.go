package router

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/hashing"
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

// HashPolicy is a route's compiled hash_policy list, for RING_HASH and
// MAGLEV clusters. A nil *HashPolicy yields no hash.
type HashPolicy struct {
	keys []hashKey
}

type hashKind uint8

const (
	hashHeader hashKind = iota
	hashAuthority
	hashCookie
	hashSourceIP
	hashQuery
)

type hashKey struct {
	kind     hashKind
	name     string // header (canonical), cookie or query parameter name
	terminal bool
	// cookieTTL set: generate the cookie when absent; cookieSuffix is the
	// Set-Cookie attributes after the value.
	cookieTTL    bool
	cookieSuffix string
}

// compileHashPolicy validates ps, rejecting what the proxy does not
// implement (filter_state, header regex rewrites, cookie attributes).
func compileHashPolicy(ps []*routev3.RouteAction_HashPolicy) (*HashPolicy, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	hp := &HashPolicy{}
	for i, p := range ps {
		k, err := compileHashKey(p)
		if err != nil {
			return nil, fmt.Errorf("hash_policy[%d]: %v", i, err)
		}
		hp.keys = append(hp.keys, k)
	}
	return hp, nil
}

func compileHashKey(p *routev3.RouteAction_HashPolicy) (hashKey, error) {
	if err := hashPolicyFields.Check(p); err != nil {
		return hashKey{}, err
	}
	k := hashKey{terminal: p.GetTerminal()}
	switch {
	case p.GetHeader() != nil:
		if err := hashHeaderFields.Check(p.GetHeader()); err != nil {
			return k, err
		}
		k.kind, k.name = hashHeader, http.CanonicalHeaderKey(p.GetHeader().GetHeaderName())
		if strings.EqualFold(p.GetHeader().GetHeaderName(), ":authority") {
			k.kind = hashAuthority
		}
	case p.GetCookie() != nil:
		c := p.GetCookie()
		if err := hashCookieFields.Check(c); err != nil {
			return k, err
		}
		k.kind, k.name = hashCookie, c.GetName()
		if c.GetTtl() != nil {
			if err := c.GetTtl().CheckValid(); err != nil {
				return k, fmt.Errorf("cookie.ttl: %v", err)
			}
			k.cookieTTL = true
			k.cookieSuffix = cookieAttributes(c.GetTtl().AsDuration(), c.GetPath())
		}
	case p.GetConnectionProperties() != nil:
		if err := hashConnFields.Check(p.GetConnectionProperties()); err != nil {
			return k, err
		}
		k.kind = hashSourceIP
		if !p.GetConnectionProperties().GetSourceIp() {
			return k, errors.New("connection_properties: source_ip is required")
		}
	case p.GetQueryParameter() != nil:
		if err := hashQueryFields.Check(p.GetQueryParameter()); err != nil {
			return k, err
		}
		k.kind, k.name = hashQuery, p.GetQueryParameter().GetName()
	default:
		return k, errors.New("a hash policy needs header, cookie, connection_properties or query_parameter")
	}
	return k, nil
}

// Hash computes a request's hash as Envoy does: each policy that yields a
// value is folded in (rotate, xor) until a terminal one matches. ok is
// false when none yielded one. setCookie is a Set-Cookie value to add to
// the response: a cookie policy with a ttl generates its cookie when the
// request lacks it, so the client sticks to the same host from then on.
func (p *HashPolicy) Hash(r *http.Request) (hash uint64, ok bool, setCookie string) {
	if p == nil {
		return 0, false, ""
	}
	for i := range p.keys {
		k := &p.keys[i]
		var h uint64
		found := false
		switch k.kind {
		case hashHeader:
			if vs := r.Header[k.name]; len(vs) > 0 {
				h, found = hashing.String(strings.Join(vs, ",")), true
			}
		case hashAuthority:
			h, found = hashing.String(r.Host), true
		case hashCookie:
			if ck, err := r.Cookie(k.name); err == nil {
				h, found = hashing.String(ck.Value), true
			} else if k.cookieTTL {
				value := generatedCookie(r)
				setCookie = k.name + `="` + value + `"` + k.cookieSuffix
				h, found = hashing.String(value), true
			}
		case hashSourceIP:
			if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				h, found = hashing.String(ip), true
			}
		case hashQuery:
			if vs, has := r.URL.Query()[k.name]; has && len(vs) > 0 {
				h, found = hashing.String(vs[0]), true
			}
		}
		if !found {
			continue
		}
		hash = (hash<<1 | hash>>63) ^ h
		ok = true
		if k.terminal {
			break
		}
	}
	return hash, ok, setCookie
}

// generatedCookie is Envoy's choice: a hash of the downstream connection's
// addresses, so requests racing on one connection get the same cookie.
func generatedCookie(r *http.Request) string {
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	return strconv.FormatUint(hashing.String(r.RemoteAddr+local), 16)
}

// cookieAttributes is what follows a generated cookie's value.
func cookieAttributes(ttl time.Duration, path string) string {
	var b strings.Builder
	if ttl > 0 {
		b.WriteString("; Max-Age=" + strconv.FormatInt(int64(ttl.Seconds()), 10))
	}
	if path != "" {
		b.WriteString("; Path=" + path)
	}
	b.WriteString("; HttpOnly")
	return b.String()
}
