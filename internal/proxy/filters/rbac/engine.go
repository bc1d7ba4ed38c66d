package rbac

import (
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

var (
	rulesFields     = protocheck.Fields(&rbacv3.RBAC{}, "action", "policies")
	policyFields    = protocheck.Fields(&rbacv3.Policy{}, "permissions", "principals")
	permissionField = protocheck.Fields(&rbacv3.Permission{}, "and_rules", "or_rules", "any", "header", "url_path",
		"destination_ip", "destination_port", "destination_port_range", "metadata", "not_rule", "requested_server_name")
	principalFields = protocheck.Fields(&rbacv3.Principal{}, "and_ids", "or_ids", "any", "authenticated", "source_ip",
		"direct_remote_ip", "remote_ip", "header", "url_path", "metadata", "not_id")
	authenticatedFields = protocheck.Fields(&rbacv3.Principal_Authenticated{}, "principal_name")
	cidrFields          = protocheck.Fields(&corev3.CidrRange{}, "address_prefix", "prefix_len")
)

// Action is what an engine does with a request its policies match.
type Action int

const (
	Allow Action = iota // matched requests pass, all others are denied
	Deny                // matched requests are denied
	Log                 // matched requests are logged; nothing is denied
)

func (a Action) String() string {
	return [...]string{"ALLOW", "DENY", "LOG"}[a]
}

// Engine is a compiled envoy.config.rbac.v3.RBAC: an action and named
// policies, each a set of permissions (what) and principals (who). A
// policy matches when any permission and any principal match.
type Engine struct {
	Action   Action
	policies []policy
}

type policy struct {
	name        string
	permissions []rule
	principals  []rule
}

// Compile builds an engine; every field it cannot enforce is an error.
func Compile(r *rbacv3.RBAC) (*Engine, error) {
	if err := rulesFields.Check(r); err != nil {
		return nil, err
	}
	e := &Engine{}
	switch r.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.Action = Allow
	case rbacv3.RBAC_DENY:
		e.Action = Deny
	case rbacv3.RBAC_LOG:
		e.Action = Log
	default:
		return nil, fmt.Errorf("action %s is not supported", r.GetAction())
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for n := range r.GetPolicies() {
		names = append(names, n)
	}
	// Envoy keeps policies in a sorted map: the first match by name wins
	// for the logged policy id.
	sort.Strings(names)
	for _, n := range names {
		pp := r.GetPolicies()[n]
		if err := policyFields.Check(pp); err != nil {
			return nil, fmt.Errorf("policy %q: %v", n, err)
		}
		if len(pp.GetPermissions()) == 0 || len(pp.GetPrincipals()) == 0 {
			return nil, fmt.Errorf("policy %q: permissions and principals are required", n)
		}
		p := policy{name: n}
		var err error
		if p.permissions, err = compileRules(pp.GetPermissions(), "permissions", "rules", compilePermission); err != nil {
			return nil, fmt.Errorf("policy %q: %v", n, err)
		}
		if p.principals, err = compileRules(pp.GetPrincipals(), "principals", "ids", compilePrincipal); err != nil {
			return nil, fmt.Errorf("policy %q: %v", n, err)
		}
		e.policies = append(e.policies, p)
	}
	return e, nil
}

// Match returns the name of the first policy matching req, or "" and false.
func (e *Engine) Match(req *filters.Request) (string, bool) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyRule(p.permissions, req) && anyRule(p.principals, req) {
			return p.name, true
		}
	}
	return "", false
}

// Allowed applies the action: whether req may pass, and the policy that
// decided (matched for DENY/LOG and ALLOW, empty when nothing matched).
func (e *Engine) Allowed(req *filters.Request) (bool, string) {
	name, matched := e.Match(req)
	switch e.Action {
	case Allow:
		return matched, name
	case Deny:
		return !matched, name
	}
	return true, name
}

func anyRule(rs []rule, req *filters.Request) bool {
	for i := range rs {
		if rs[i].match(req) {
			return true
		}
	}
	return false
}

type ruleKind uint8

const (
	ruleAny ruleKind = iota
	ruleAnd
	ruleOr
	ruleNot
	ruleHeader
	rulePath
	ruleDestIP
	ruleDestPort
	ruleDestPortRange
	ruleMetadata
	ruleSNI
	// principals only
	ruleAuthenticated
	ruleDirectRemoteIP
	ruleRemoteIP
)

// rule is one compiled Permission or Principal node (their trees share
// and/or/not and several leaves); a tagged struct rather than an interface
// so evaluation is a switch with no allocation.
type rule struct {
	kind     ruleKind
	children []rule
	header   headerMatcher
	str      stringMatcher
	anyName  bool // authenticated without principal_name
	cidr     cidr
	lo, hi   uint32
	metadata metadataMatcher
}

func compilePermission(p *rbacv3.Permission) (rule, error) {
	if p == nil {
		return rule{}, fmt.Errorf("permission is empty")
	}
	if err := permissionField.Check(p); err != nil {
		return rule{}, err
	}
	var out rule
	var err error
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return out, fmt.Errorf("any must be true")
		}
		out.kind = ruleAny
	case *rbacv3.Permission_AndRules:
		out.kind = ruleAnd
		out.children, err = compileRules(r.AndRules.GetRules(), "and_rules", "rules", compilePermission)
	case *rbacv3.Permission_OrRules:
		out.kind = ruleOr
		out.children, err = compileRules(r.OrRules.GetRules(), "or_rules", "rules", compilePermission)
	case *rbacv3.Permission_NotRule:
		out.kind = ruleNot
		var c rule
		c, err = compilePermission(r.NotRule)
		out.children = []rule{c}
		if err != nil {
			err = fmt.Errorf("not_rule: %v", err)
		}
	case *rbacv3.Permission_Header:
		out.kind = ruleHeader
		out.header, err = compileHeader(r.Header)
	case *rbacv3.Permission_UrlPath:
		out.kind = rulePath
		out.str, err = compilePath(r.UrlPath)
	case *rbacv3.Permission_DestinationIp:
		out.kind = ruleDestIP
		out.cidr, err = compileCIDR(r.DestinationIp)
	case *rbacv3.Permission_DestinationPort:
		out.kind, out.lo = ruleDestPort, r.DestinationPort
	case *rbacv3.Permission_DestinationPortRange:
		out.kind = ruleDestPortRange
		out.lo, out.hi = uint32(r.DestinationPortRange.GetStart()), uint32(r.DestinationPortRange.GetEnd())
	case *rbacv3.Permission_Metadata:
		out.kind = ruleMetadata
		out.metadata, err = compileMetadata(r.Metadata)
	case *rbacv3.Permission_RequestedServerName:
		out.kind = ruleSNI
		out.str, err = compileString(r.RequestedServerName)
	default:
		return out, fmt.Errorf("permission rule is required")
	}
	return out, err
}

// compileRules compiles a list of Permissions or Principals.
func compileRules[T any](items []*T, field, what string, compile func(*T) (rule, error)) ([]rule, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: %s are required", field, what)
	}
	out := make([]rule, 0, len(items))
	for i, it := range items {
		c, err := compile(it)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (p *rule) match(req *filters.Request) bool {
	switch p.kind {
	case ruleAny:
		return true
	case ruleAnd:
		for i := range p.children {
			if !p.children[i].match(req) {
				return false
			}
		}
		return true
	case ruleOr:
		return anyRule(p.children, req)
	case ruleNot:
		return !p.children[0].match(req)
	case ruleHeader:
		return p.header.match(req.HTTP)
	case rulePath:
		return req.HTTP != nil && p.str.match(requestPath(req.HTTP))
	case ruleDestIP:
		return req.Conn != nil && p.cidr.contains(req.Conn.Destination.Addr())
	case ruleDestPort:
		return req.Conn != nil && uint32(req.Conn.Destination.Port()) == p.lo
	case ruleDestPortRange:
		if req.Conn == nil {
			return false
		}
		port := uint32(req.Conn.Destination.Port())
		return port >= p.lo && port < p.hi
	case ruleAuthenticated:
		// Envoy matches principal_name against the peer certificate's URI
		// SAN, which for a SPIFFE identity carries the scheme.
		if req.Conn == nil || req.Conn.PeerPrincipal == "" {
			return false
		}
		if p.anyName {
			return true
		}
		if p.str.kind == strExact && !p.str.fold {
			// Compare without building "spiffe://"+principal.
			rest, ok := strings.CutPrefix(p.str.pattern, "spiffe://")
			return ok && rest == req.Conn.PeerPrincipal
		}
		return p.str.match("spiffe://" + req.Conn.PeerPrincipal)
	case ruleDirectRemoteIP:
		return req.Conn != nil && p.cidr.contains(req.Conn.Source.Addr())
	case ruleRemoteIP:
		return p.cidr.contains(remoteIP(req))
	case ruleMetadata:
		return p.metadata.match(req.Metadata)
	case ruleSNI:
		return req.Conn != nil && p.str.match(req.Conn.SNI)
	}
	return false
}

func compilePrincipal(p *rbacv3.Principal) (rule, error) {
	if p == nil {
		return rule{}, fmt.Errorf("principal is empty")
	}
	if err := principalFields.Check(p); err != nil {
		return rule{}, err
	}
	var out rule
	var err error
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return out, fmt.Errorf("any must be true")
		}
		out.kind = ruleAny
	case *rbacv3.Principal_AndIds:
		out.kind = ruleAnd
		out.children, err = compileRules(id.AndIds.GetIds(), "and_ids", "ids", compilePrincipal)
	case *rbacv3.Principal_OrIds:
		out.kind = ruleOr
		out.children, err = compileRules(id.OrIds.GetIds(), "or_ids", "ids", compilePrincipal)
	case *rbacv3.Principal_NotId:
		out.kind = ruleNot
		var c rule
		c, err = compilePrincipal(id.NotId)
		out.children = []rule{c}
		if err != nil {
			err = fmt.Errorf("not_id: %v", err)
		}
	case *rbacv3.Principal_Authenticated_:
		out.kind = ruleAuthenticated
		if err := authenticatedFields.Check(id.Authenticated); err != nil {
			return out, fmt.Errorf("authenticated: %v", err)
		}
		if id.Authenticated.GetPrincipalName() == nil {
			out.anyName = true
		} else {
			out.str, err = compileString(id.Authenticated.GetPrincipalName())
		}
	case *rbacv3.Principal_SourceIp:
		// Deprecated alias of direct_remote_ip.
		out.kind = ruleDirectRemoteIP
		out.cidr, err = compileCIDR(id.SourceIp)
	case *rbacv3.Principal_DirectRemoteIp:
		out.kind = ruleDirectRemoteIP
		out.cidr, err = compileCIDR(id.DirectRemoteIp)
	case *rbacv3.Principal_RemoteIp:
		out.kind = ruleRemoteIP
		out.cidr, err = compileCIDR(id.RemoteIp)
	case *rbacv3.Principal_Header:
		out.kind = ruleHeader
		out.header, err = compileHeader(id.Header)
	case *rbacv3.Principal_UrlPath:
		out.kind = rulePath
		out.str, err = compilePath(id.UrlPath)
	case *rbacv3.Principal_Metadata:
		out.kind = ruleMetadata
		out.metadata, err = compileMetadata(id.Metadata)
	default:
		return out, fmt.Errorf("principal identifier is required")
	}
	return out, err
}

// remoteIP is Envoy's downstream remote address for an HCM that does not
// use the remote address: the last X-Forwarded-For hop when there is one,
// else the direct peer.
func remoteIP(req *filters.Request) netip.Addr {
	if req.HTTP != nil {
		if xff := lastXFF(req.HTTP.Header); xff != "" {
			if a, err := netip.ParseAddr(xff); err == nil {
				return a
			}
		}
	}
	if req.Conn == nil {
		return netip.Addr{}
	}
	return req.Conn.Source.Addr()
}

func lastXFF(h http.Header) string {
	vs := h["X-Forwarded-For"]
	if len(vs) == 0 {
		return ""
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

func compileCIDR(c *corev3.CidrRange) (cidr, error) {
	if err := cidrFields.Check(c); err != nil {
		return cidr{}, err
	}
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return cidr{}, fmt.Errorf("address_prefix %q is not an IP address", c.GetAddressPrefix())
	}
	bits := a.BitLen()
	if c.GetPrefixLen() != nil {
		bits = int(c.GetPrefixLen().GetValue())
	}
	p, err := a.Unmap().Prefix(bits)
	if err != nil {
		return cidr{}, fmt.Errorf("prefix_len %d for %s: %v", bits, a, err)
	}
	return cidr{prefix: p}, nil
}
