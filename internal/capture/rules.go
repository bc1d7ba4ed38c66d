package capture

import (
	"strconv"
	"strings"
)

// Family is an IP family: its rules go to iptables or ip6tables.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Istio's chains.
const (
	ChainInbound    = "ISTIO_INBOUND"
	ChainInRedirect = "ISTIO_IN_REDIRECT"
	ChainOutput     = "ISTIO_OUTPUT"
	ChainRedirect   = "ISTIO_REDIRECT"
	ChainOutputDNS  = "ISTIO_OUTPUT_DNS"
)

// chainPrefix marks the chains this package owns: re-applying or cleaning
// up replaces every chain with this prefix and every jump into one.
const chainPrefix = "ISTIO_"

const (
	tableNat = "nat"
	tableRaw = "raw"
)

// tableOrder is the order tables are written in, Istio's.
var tableOrder = []string{tableNat, tableRaw, "mangle", "filter", "security"}

// Rule is one appended iptables rule.
type Rule struct {
	Table string
	Chain string
	Args  []string
}

func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// Ruleset is one family's capture: the Istio chains created per table (in
// order of first use) and the rules appended, in order.
type Ruleset struct {
	Family Family
	Chains map[string][]string
	Rules  []Rule
}

// Rulesets returns the rules for IPv4 and, when c.IPv6, for IPv6.
func Rulesets(c *Config) []Ruleset {
	out := []Ruleset{Build(c, IPv4)}
	if c.IPv6 {
		out = append(out, Build(c, IPv6))
	}
	return out
}

type builder struct{ rs Ruleset }

func (b *builder) declare(table, chain string) {
	if !strings.HasPrefix(chain, chainPrefix) {
		return
	}
	for _, c := range b.rs.Chains[table] {
		if c == chain {
			return
		}
	}
	b.rs.Chains[table] = append(b.rs.Chains[table], chain)
}

func (b *builder) add(table, chain string, args ...string) {
	b.declare(table, chain)
	for i, a := range args {
		if (a == "-j" || a == "-g") && i+1 < len(args) {
			b.declare(table, args[i+1])
		}
	}
	b.rs.Rules = append(b.rs.Rules, Rule{Table: table, Chain: chain, Args: args})
}

// Build returns fam's rules for c, in Istio's order: the first match wins,
// so exclusions come before the redirects they carve out of.
func Build(c *Config, fam Family) Ruleset {
	b := &builder{rs: Ruleset{Family: fam, Chains: map[string][]string{}}}
	loopback, passthrough, hostBits := "127.0.0.1/32", InboundPassthroughIPv4+"/32", "/32"
	if fam == IPv6 {
		loopback, passthrough, hostBits = "::1/128", InboundPassthroughIPv6+"/128", "/128"
	}
	tunnel := strconv.Itoa(c.InboundTunnelPort)
	dns := c.DNSEnabled()
	var dnsServers []string
	for _, a := range c.DNSServers {
		if a.Is6() == (fam == IPv6) {
			dnsServers = append(dnsServers, a.String()+hostBits)
		}
	}
	dnsHere := dns && (c.CaptureAllDNS || len(dnsServers) > 0)

	// The tunnel port (HBONE) is never captured inbound.
	b.add(tableNat, ChainInbound, "-p", "tcp", "--dport", tunnel, "-j", "RETURN")
	b.add(tableNat, ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(c.ProxyPort))
	b.add(tableNat, ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(c.InboundCapturePort))

	// Inbound: everything (minus exclusions) or the listed ports go to 15006.
	if c.InboundAll || len(c.InboundPorts) > 0 {
		b.add(tableNat, "PREROUTING", "-p", "tcp", "-j", ChainInbound)
		for _, i := range c.ExcludeInterfaces {
			b.add(tableNat, ChainInbound, "-i", i, "-j", "RETURN")
		}
		if c.InboundAll {
			for _, m := range portMatch(c.InboundPortsExclude) {
				b.add(tableNat, ChainInbound, append(append([]string{"-p", "tcp"}, m...), "-j", "RETURN")...)
			}
			b.add(tableNat, ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
		} else {
			for _, p := range c.InboundPorts {
				b.add(tableNat, ChainInbound, "-p", "tcp", "--dport", strconv.Itoa(p), "-j", ChainInRedirect)
			}
		}
	}

	// Outbound: every locally generated packet walks ISTIO_OUTPUT.
	b.add(tableNat, "OUTPUT", "-j", ChainOutput)
	for _, i := range c.ExcludeInterfaces {
		b.add(tableNat, ChainOutput, "-o", i, "-j", "RETURN")
	}
	for _, m := range portMatch(c.OutboundPortsExclude) {
		b.add(tableNat, ChainOutput, append(append([]string{"-p", "tcp"}, m...), "-j", "RETURN")...)
		b.add(tableNat, ChainOutput, append(append([]string{"-p", "udp"}, m...), "-j", "RETURN")...)
	}
	// The sidecar reaches the app from 127.0.0.6 (inbound passthrough):
	// that connection is already the proxied one.
	b.add(tableNat, ChainOutput, "-o", "lo", "-s", passthrough, "-j", "RETURN")

	loopbackIncluded := false
	for _, p := range c.OutboundInclude {
		if p.Addr().IsLoopback() {
			loopbackIncluded = true
		}
	}
	owner := func(kind, id string) {
		// The proxy calling its own pod's address (a service VIP that
		// resolved to this pod) comes back in through the inbound path.
		notPorts := []string{"!", "--dport", tunnel}
		if dns {
			notPorts = []string{"-m", "multiport", "!", "--dports", "53," + tunnel}
		}
		b.add(tableNat, ChainOutput, append(append([]string{"-o", "lo", "!", "-d", loopback, "-p", "tcp"}, notPorts...),
			"-m", "owner", kind, id, "-j", ChainInRedirect)...)
		// The app calling itself over loopback is not captured, unless the
		// user asked for loopback ranges. With DNS capture, TCP to a
		// resolver on loopback still is.
		if !loopbackIncluded {
			if dns {
				b.add(tableNat, ChainOutput, "-o", "lo", "-p", "tcp", "!", "--dport", "53", "-m", "owner", "!", kind, id, "-j", "RETURN")
			} else {
				b.add(tableNat, ChainOutput, "-o", "lo", "-m", "owner", "!", kind, id, "-j", "RETURN")
			}
		}
		// Everything else the proxy sends leaves as it is (no loop).
		b.add(tableNat, ChainOutput, "-m", "owner", kind, id, "-j", "RETURN")
	}
	for _, uid := range c.ProxyUIDs {
		owner("--uid-owner", uid)
	}
	for _, gid := range c.ProxyGIDs {
		owner("--gid-owner", gid)
	}

	// Capture by the app's group: only some groups, or all but some.
	if len(c.OwnerGroups) > 0 {
		var notAny []string
		for _, g := range c.OwnerGroups {
			notAny = append(notAny, "-m", "owner", "!", "--gid-owner", g)
		}
		b.add(tableNat, ChainOutput, append(notAny, "-j", "RETURN")...)
	}
	for _, g := range c.OwnerGroupsExclude {
		b.add(tableNat, ChainOutput, "-m", "owner", "--gid-owner", g, "-j", "RETURN")
	}

	if dnsHere {
		b.dnsNat(c, dnsServers)
	}

	// Envoy-aware apps and container-to-container traffic use localhost.
	b.add(tableNat, ChainOutput, "-d", loopback, "-j", "RETURN")
	for _, p := range c.OutboundExclude {
		if p.Addr().Is6() == (fam == IPv6) {
			b.add(tableNat, ChainOutput, "-d", p.String(), "-j", "RETURN")
		}
	}
	for _, p := range c.OutboundPortsInclude {
		b.add(tableNat, ChainOutput, "-p", "tcp", "--dport", strconv.Itoa(p), "-j", ChainRedirect)
	}
	if c.OutboundAll {
		b.add(tableNat, ChainOutput, "-j", ChainRedirect)
	} else {
		for _, p := range c.OutboundInclude {
			if p.Addr().Is6() == (fam == IPv6) {
				b.add(tableNat, ChainOutput, "-d", p.String(), "-j", ChainRedirect)
			}
		}
	}

	if dnsHere {
		b.dnsConntrack(c, dnsServers)
	}
	return b.rs
}

// dnsNat sends DNS (UDP and TCP port 53) from anyone but the proxy to the
// agent's DNS proxy on 15053.
func (b *builder) dnsNat(c *Config, servers []string) {
	dnsPort := strconv.Itoa(DNSCapturePort)
	b.add(tableNat, ChainOutput, "-j", ChainOutputDNS)
	to := func(proto string) {
		if c.CaptureAllDNS {
			b.add(tableNat, ChainOutputDNS, "-p", proto, "--dport", "53", "-j", "REDIRECT", "--to-ports", dnsPort)
			return
		}
		// Only the pod's resolvers: a local resolver chain (app → agent →
		// dnsmasq → upstream) must not loop back into the agent.
		for _, s := range servers {
			b.add(tableNat, ChainOutputDNS, "-p", proto, "--dport", "53", "-d", s, "-j", "REDIRECT", "--to-ports", dnsPort)
		}
	}
	to("tcp")
	for _, uid := range c.ProxyUIDs {
		b.add(tableNat, ChainOutputDNS, "-p", "udp", "--dport", "53", "-m", "owner", "--uid-owner", uid, "-j", "RETURN")
	}
	for _, gid := range c.ProxyGIDs {
		b.add(tableNat, ChainOutputDNS, "-p", "udp", "--dport", "53", "-m", "owner", "--gid-owner", gid, "-j", "RETURN")
	}
	to("udp")
}

// dnsConntrack splits UDP DNS into two conntrack zones (app ↔ agent and
// agent ↔ resolver), so the two legs of one query do not collide in
// conntrack (Istio's fix for dropped DNS replies).
func (b *builder) dnsConntrack(c *Config, servers []string) {
	b.add(tableRaw, "OUTPUT", "-j", ChainOutputDNS)
	zones := func(kind, id string) {
		b.add(tableRaw, ChainOutputDNS, "-p", "udp", "--dport", "53", "-m", "owner", kind, id, "-j", "CT", "--zone", "1")
		b.add(tableRaw, ChainOutputDNS, "-p", "udp", "--sport", strconv.Itoa(DNSCapturePort), "-m", "owner", kind, id, "-j", "CT", "--zone", "2")
	}
	for _, uid := range c.ProxyUIDs {
		zones("--uid-owner", uid)
	}
	for _, gid := range c.ProxyGIDs {
		zones("--gid-owner", gid)
	}
	b.add(tableRaw, "PREROUTING", "-j", ChainInbound)
	if c.CaptureAllDNS {
		b.add(tableRaw, ChainOutputDNS, "-p", "udp", "--dport", "53", "-j", "CT", "--zone", "2")
		b.add(tableRaw, ChainInbound, "-p", "udp", "--sport", "53", "-j", "CT", "--zone", "1")
		return
	}
	for _, s := range servers {
		b.add(tableRaw, ChainOutputDNS, "-p", "udp", "--dport", "53", "-d", s, "-j", "CT", "--zone", "2")
		b.add(tableRaw, ChainInbound, "-p", "udp", "--sport", "53", "-s", s, "-j", "CT", "--zone", "1")
	}
}

// portMatch matches any of ports: --dport for one, multiport for more
// (at most 15 ports per multiport match, the kernel's limit).
func portMatch(ports []int) [][]string {
	if len(ports) == 1 {
		return [][]string{{"--dport", strconv.Itoa(ports[0])}}
	}
	var out [][]string
	for len(ports) > 0 {
		n := min(len(ports), 15)
		s := make([]string, n)
		for i, p := range ports[:n] {
			s[i] = strconv.Itoa(p)
		}
		out = append(out, []string{"-m", "multiport", "--dports", strings.Join(s, ",")})
		ports = ports[n:]
	}
	return out
}
