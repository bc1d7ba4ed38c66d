package analyze

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/labels"
)

// gatewaySelectorAnalyzer: IST0101 "selector" for a Gateway whose
// selector matches no workload (in any namespace, as gateways may select
// pods elsewhere).
func gatewaySelectorAnalyzer(c *context) {
	for _, e := range c.in.List("Gateway") {
		gw, ok := e.Obj.Spec.(*networking.Gateway)
		if !ok || len(gw.GetSelector()) == 0 {
			continue
		}
		if len(c.selected("", gw.GetSelector())) == 0 {
			c.report(ReferencedResourceNotFound, e, "spec.selector", "selector", selectorString(gw.GetSelector()))
		}
	}
}

// gatewaySecretAnalyzer: IST0101 "credentialName" when a TLS server's
// Secret is missing from the namespace of the gateway's workloads.
func gatewaySecretAnalyzer(c *context) {
	for _, e := range c.in.List("Gateway") {
		gw, ok := e.Obj.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		pods := c.selected("", gw.GetSelector())
		if len(pods) == 0 {
			continue // reported by the selector check
		}
		for i, s := range gw.GetServers() {
			name := s.GetTls().GetCredentialName()
			if name == "" {
				continue
			}
			found := false
			for _, p := range pods {
				if _, ok := c.in.Get("Secret", p.namespace, name); ok {
					found = true
				}
				if _, ok := c.in.Get("Secret", p.namespace, name+"-cacert"); ok && !found {
					found = true
				}
			}
			if !found {
				c.report(ReferencedResourceNotFound, e, fmt.Sprintf("spec.servers[%d].tls.credentialName", i), "credentialName", name)
			}
		}
	}
}

// conflictingGatewayAnalyzer: IST0145 for gateways whose selectors pick
// the same workloads and that serve overlapping hosts on one port.
func conflictingGatewayAnalyzer(c *context) {
	gws := c.in.List("Gateway")
	for _, e := range gws {
		gw, ok := e.Obj.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		for _, o := range gws {
			ogw, ok := o.Obj.Spec.(*networking.Gateway)
			if !ok || o == e || !selectorsOverlap(gw.GetSelector(), ogw.GetSelector()) {
				continue
			}
			for _, s := range gw.GetServers() {
				for _, os := range ogw.GetServers() {
					port := s.GetPort().GetNumber()
					if port == 0 || port != os.GetPort().GetNumber() {
						continue
					}
					if hosts := overlappingHosts(s.GetHosts(), os.GetHosts()); len(hosts) > 0 {
						c.report(ConflictingGateways, e, "spec.servers",
							o.Obj.Meta.Namespace+"/"+o.Obj.Meta.Name, selectorString(gw.GetSelector()), strconv.Itoa(int(port)), strings.Join(hosts, ","))
					}
				}
			}
		}
	}
}

// selectorsOverlap reports whether one selector is contained in the other.
func selectorsOverlap(a, b map[string]string) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	sub := func(x, y map[string]string) bool { return labels.SelectorFromSet(x).Matches(labels.Set(y)) }
	return sub(a, b) || sub(b, a)
}

func overlappingHosts(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			hx, hy := stripNS(x), stripNS(y)
			if hostsOverlap(hx, hy) {
				out = append(out, hx)
				break
			}
		}
	}
	return out
}

func stripNS(h string) string {
	if i := strings.IndexByte(h, '/'); i >= 0 {
		return h[i+1:]
	}
	return h
}

// gatewayCertificateAnalyzer: IST0138 when gateways serving the same
// workloads share a TLS certificate.
func gatewayCertificateAnalyzer(c *context) {
	type certKey struct{ selector, cert string }
	users := map[certKey]map[string]*Entry{}
	for _, e := range c.in.List("Gateway") {
		gw, ok := e.Obj.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		for _, s := range gw.GetServers() {
			tls := s.GetTls()
			if tls == nil || tls.GetMode() == networking.ServerTLSSettings_PASSTHROUGH || tls.GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				continue
			}
			cert := tls.GetCredentialName()
			if cert == "" && tls.GetServerCertificate() != "" {
				cert = tls.GetServerCertificate() + "|" + tls.GetPrivateKey()
			}
			if cert == "" {
				continue
			}
			k := certKey{selectorString(gw.GetSelector()), cert}
			if users[k] == nil {
				users[k] = map[string]*Entry{}
			}
			users[k][e.Obj.Meta.Namespace+"/"+e.Obj.Meta.Name] = e
		}
	}
	for _, byName := range users {
		if len(byName) < 2 {
			continue
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c.report(GatewayDuplicateCertificate, byName[n], "spec.servers", names)
		}
	}
}
