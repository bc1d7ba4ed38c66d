package listener

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"

	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/rbac"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

const netRBACFilterName = "envoy.filters.network.rbac"

var netRBACFields = protocheck.Fields(&rbacnetv3.RBAC{}, "rules", "shadow_rules", "stat_prefix", "shadow_rules_stat_prefix", "enforcement_type")

// networkRBAC is a compiled envoy.filters.network.rbac: it decides once per
// connection, before tcp_proxy dials upstream (ONE_TIME_ON_FIRST_BYTE
// without waiting for the byte: the decision uses only connection facts).
type networkRBAC struct {
	rules, shadow          *rbac.Engine
	allowed, denied        *stats.Counter
	shadowAllow, shadowDen *stats.Counter
	logged                 *stats.Counter
	statPrefix             string
}

func newNetworkRBAC(cfg *rbacnetv3.RBAC, d *deps) (*networkRBAC, error) {
	if err := netRBACFields.Check(cfg); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("stat_prefix is required")
	}
	n := &networkRBAC{statPrefix: cfg.GetStatPrefix()}
	var err error
	if cfg.GetRules() != nil {
		if n.rules, err = rbac.Compile(cfg.GetRules()); err != nil {
			return nil, fmt.Errorf("rules: %v", err)
		}
	}
	if cfg.GetShadowRules() != nil {
		if n.shadow, err = rbac.Compile(cfg.GetShadowRules()); err != nil {
			return nil, fmt.Errorf("shadow_rules: %v", err)
		}
	}
	p := n.statPrefix + "rbac."
	n.allowed = d.Stats.Counter(p + "allowed")
	n.denied = d.Stats.Counter(p + "denied")
	n.logged = d.Stats.Counter(p + "logged")
	n.shadowAllow = d.Stats.Counter(cfg.GetShadowRulesStatPrefix() + p + "shadow_allowed")
	n.shadowDen = d.Stats.Counter(cfg.GetShadowRulesStatPrefix() + p + "shadow_denied")
	return n, nil
}

// authorize runs the chain's network RBAC filters on a new connection; a
// denied connection is to be closed without dialing upstream.
func (t *tcpProxy) authorize(conn net.Conn) bool {
	if len(t.rbac) == 0 {
		return true
	}
	req := &filters.Request{Conn: netConnInfo(conn)}
	for _, n := range t.rbac {
		if n.shadow != nil {
			if ok, _ := n.shadow.Allowed(req); ok {
				n.shadowAllow.Inc()
			} else {
				n.shadowDen.Inc()
			}
		}
		if n.rules == nil {
			continue
		}
		ok, policy := n.rules.Allowed(req)
		switch {
		case n.rules.Action == rbac.Log:
			if policy != "" {
				n.logged.Inc()
				t.deps.Log.Info("rbac audit: connection matched", "policy", policy, "source", req.Conn.Source, "statPrefix", n.statPrefix)
			}
		case ok:
			n.allowed.Inc()
		default:
			n.denied.Inc()
			t.deps.Log.Debug("rbac: connection denied", "action", n.rules.Action, "policy", policy, "source", req.Conn.Source, "statPrefix", n.statPrefix)
			return false
		}
	}
	return true
}

// netConnInfo describes a raw connection for RBAC.
func netConnInfo(conn net.Conn) *filters.Conn {
	c := &filters.Conn{}
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		c.Source = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		c.Destination = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		if st.HandshakeComplete {
			c.TLS = true
			c.SNI = st.ServerName
			if len(st.PeerCertificates) > 0 {
				c.PeerCertificate = st.PeerCertificates[0]
				for _, u := range c.PeerCertificate.URIs {
					if u.Scheme == "spiffe" {
						c.PeerPrincipal = u.Host + u.Path
						break
					}
				}
			}
		}
	}
	return c
}
