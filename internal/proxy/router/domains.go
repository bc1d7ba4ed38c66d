package router

import (
	"fmt"
	"slices"
	"strings"
)

// domainIndex finds a virtual host by request host in Envoy's order: exact
// domain, longest suffix wildcard ("*.foo.com", "*-bar.foo.com"), longest
// prefix wildcard ("foo.*"), then "*". Domains are stored lower-case; hosts
// are compared case-insensitively.
type domainIndex struct {
	exact    map[string]*virtualHost
	suffixes []wildcardGroup // longest first
	prefixes []wildcardGroup // longest first
	any      *virtualHost
}

// wildcardGroup holds the wildcard domains whose fixed part has length n, so
// a lookup is one map probe per distinct length.
type wildcardGroup struct {
	n     int
	hosts map[string]*virtualHost
}

// add registers domain for vh; a domain may appear only once in a route
// configuration, as in Envoy.
func (x *domainIndex) add(domain string, vh *virtualHost) error {
	d := strings.ToLower(domain)
	switch {
	case d == "":
		return fmt.Errorf("empty domain")
	case d == "*":
		if x.any != nil {
			return fmt.Errorf("duplicate domain %q (also in virtual_host %q)", domain, x.any.name)
		}
		x.any = vh
	case strings.HasPrefix(d, "*"):
		return addWildcard(&x.suffixes, domain, d[1:], vh)
	case strings.HasSuffix(d, "*"):
		return addWildcard(&x.prefixes, domain, d[:len(d)-1], vh)
	default:
		if x.exact == nil {
			x.exact = make(map[string]*virtualHost)
		}
		if other, dup := x.exact[d]; dup {
			return fmt.Errorf("duplicate domain %q (also in virtual_host %q)", domain, other.name)
		}
		x.exact[d] = vh
	}
	return nil
}

func addWildcard(groups *[]wildcardGroup, domain, fixed string, vh *virtualHost) error {
	i := slices.IndexFunc(*groups, func(g wildcardGroup) bool { return g.n == len(fixed) })
	if i < 0 {
		*groups = append(*groups, wildcardGroup{n: len(fixed), hosts: make(map[string]*virtualHost)})
		slices.SortFunc(*groups, func(a, b wildcardGroup) int { return b.n - a.n })
		i = slices.IndexFunc(*groups, func(g wildcardGroup) bool { return g.n == len(fixed) })
	}
	g := (*groups)[i]
	if other, dup := g.hosts[fixed]; dup {
		return fmt.Errorf("duplicate domain %q (also in virtual_host %q)", domain, other.name)
	}
	g.hosts[fixed] = vh
	return nil
}

// find returns the virtual host for host, or nil.
func (x *domainIndex) find(host string) *virtualHost {
	// Lower-case into a stack buffer: map lookups keyed by string(bytes) do
	// not allocate.
	var buf [256]byte
	var h []byte
	if len(host) <= len(buf) {
		h = buf[:len(host)]
		for i := 0; i < len(host); i++ {
			h[i] = lowerASCII(host[i])
		}
	} else {
		h = []byte(strings.ToLower(host))
	}
	if vh, ok := x.exact[string(h)]; ok {
		return vh
	}
	// The wildcard must stand for at least one character, hence n < len(h).
	for _, g := range x.suffixes {
		if g.n < len(h) {
			if vh, ok := g.hosts[string(h[len(h)-g.n:])]; ok {
				return vh
			}
		}
	}
	for _, g := range x.prefixes {
		if g.n < len(h) {
			if vh, ok := g.hosts[string(h[:g.n])]; ok {
				return vh
			}
		}
	}
	return x.any
}

// stripPort removes a trailing ":port" from host, minding IPv6 literals
// ("[::1]:80" → "[::1]").
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i == len(host)-1 {
		return host
	}
	if j := strings.LastIndexByte(host, ']'); j > i {
		return host // a colon inside an IPv6 literal, no port
	}
	for k := i + 1; k < len(host); k++ {
		if host[k] < '0' || host[k] > '9' {
			return host
		}
	}
	return host[:i]
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
