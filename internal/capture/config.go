// Package capture builds Istio's sidecar traffic capture (the rules of
// istio-iptables: ISTIO_INBOUND, ISTIO_IN_REDIRECT, ISTIO_OUTPUT,
// ISTIO_REDIRECT, optional DNS capture) as data, renders them as
// iptables-restore input and applies them atomically.
package capture

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Istio's fixed values.
const (
	// InboundPassthroughIPv4 is the source the sidecar binds when it forwards
	// inbound traffic to the app, so that traffic is not captured again.
	InboundPassthroughIPv4 = "127.0.0.6"
	// InboundPassthroughIPv6 is its IPv6 twin (added to lo when IPv6 rules apply).
	InboundPassthroughIPv6 = "::6"
	// DNSCapturePort is where the agent's DNS proxy listens.
	DNSCapturePort = 15053
)

// Options are istio-iptables' settings as given on the command line or in
// the environment: strings, parsed by Parse.
type Options struct {
	ProxyPort               string // -p, --envoy-port
	InboundCapturePort      string // -z, --inbound-capture-port
	InboundTunnelPort       string // -e, --inbound-tunnel-port
	ProxyUID                string // -u, --proxy-uid (comma separated)
	ProxyGID                string // -g, --proxy-gid (comma separated; default: the uids)
	InterceptionMode        string // -m, --istio-inbound-interception-mode
	InboundTProxyMark       string // -t, --istio-inbound-tproxy-mark
	InboundPorts            string // -b, --istio-inbound-ports ("*" or list)
	InboundPortsExclude     string // -d, --istio-local-exclude-ports
	OutboundIPRangesInclude string // -i, --istio-service-cidr ("*" or CIDR list)
	OutboundIPRangesExclude string // -x, --istio-service-exclude-cidr
	OutboundPortsInclude    string // -q, --istio-outbound-ports
	OutboundPortsExclude    string // -o, --istio-local-outbound-ports-exclude
	ExcludeInterfaces       string // -c, --istio-exclude-interfaces
	// OwnerGroupsInclude and OwnerGroupsExclude are Istio's environment-only
	// ISTIO_OUTBOUND_OWNER_GROUPS ("*" or a list of groups whose outbound
	// traffic is captured) and ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE (groups
	// left alone; only with "*"). Groups are names or gids.
	OwnerGroupsInclude string
	OwnerGroupsExclude string
	RedirectDNS        bool // --redirect-dns (ISTIO_META_DNS_CAPTURE)
	CaptureAllDNS      bool // --capture-all-dns
	// DNSServers are the resolvers whose port 53 is captured when
	// RedirectDNS is set without CaptureAllDNS (Istio reads /etc/resolv.conf).
	DNSServers []string
	// IPv6 also builds the ip6tables rules (the pod has an IPv6 address or
	// the ranges name IPv6 networks).
	IPv6 bool
}

// Config is a parsed, validated Options.
type Config struct {
	ProxyPort          int
	InboundCapturePort int
	InboundTunnelPort  int
	ProxyUIDs          []string
	ProxyGIDs          []string

	InboundAll          bool  // -b '*'
	InboundPorts        []int // -b list (when not InboundAll)
	InboundPortsExclude []int // only applies with InboundAll

	OutboundAll          bool // -i '*'
	OutboundInclude      []netip.Prefix
	OutboundExclude      []netip.Prefix
	OutboundPortsInclude []int
	OutboundPortsExclude []int
	ExcludeInterfaces    []string
	// OwnerGroups, when set, are the only groups whose outbound traffic is
	// captured; else OwnerGroupsExclude are groups whose traffic is not.
	OwnerGroups        []string
	OwnerGroupsExclude []string

	RedirectDNS   bool
	CaptureAllDNS bool
	DNSServers    []netip.Addr

	IPv6 bool
}

// Parse validates o; errors name the flag.
func Parse(o Options) (*Config, error) {
	c := &Config{RedirectDNS: o.RedirectDNS, CaptureAllDNS: o.CaptureAllDNS, IPv6: o.IPv6}
	var err error
	if c.ProxyPort, err = port("--envoy-port", o.ProxyPort, 15001); err != nil {
		return nil, err
	}
	if c.InboundCapturePort, err = port("--inbound-capture-port", o.InboundCapturePort, 15006); err != nil {
		return nil, err
	}
	if c.InboundTunnelPort, err = port("--inbound-tunnel-port", o.InboundTunnelPort, 15008); err != nil {
		return nil, err
	}
	switch strings.ToUpper(strings.TrimSpace(o.InterceptionMode)) {
	case "", "REDIRECT":
	case "TPROXY":
		return nil, fmt.Errorf("--istio-inbound-interception-mode: TPROXY is not supported yet; use REDIRECT")
	default:
		return nil, fmt.Errorf("--istio-inbound-interception-mode: %q is neither REDIRECT nor TPROXY", o.InterceptionMode)
	}
	if c.ProxyUIDs, err = ids("--proxy-uid", o.ProxyUID); err != nil {
		return nil, err
	}
	if len(c.ProxyUIDs) == 0 {
		c.ProxyUIDs = []string{"1337"}
	}
	if c.ProxyGIDs, err = ids("--proxy-gid", o.ProxyGID); err != nil {
		return nil, err
	}
	if len(c.ProxyGIDs) == 0 {
		// Istio: the proxy's gid defaults to its uid.
		c.ProxyGIDs = c.ProxyUIDs
	}
	if strings.TrimSpace(o.InboundPorts) == "*" {
		c.InboundAll = true
	} else if c.InboundPorts, err = ports("--istio-inbound-ports", o.InboundPorts); err != nil {
		return nil, err
	}
	if c.InboundPortsExclude, err = ports("--istio-local-exclude-ports", o.InboundPortsExclude); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.OutboundIPRangesInclude) == "*" {
		c.OutboundAll = true
	} else if c.OutboundInclude, err = prefixes("--istio-service-cidr", o.OutboundIPRangesInclude); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.OutboundIPRangesExclude) == "*" {
		return nil, fmt.Errorf("--istio-service-exclude-cidr: \"*\" is not allowed (it would exclude everything; leave --istio-service-cidr empty instead)")
	}
	if c.OutboundExclude, err = prefixes("--istio-service-exclude-cidr", o.OutboundIPRangesExclude); err != nil {
		return nil, err
	}
	if c.OutboundPortsInclude, err = ports("--istio-outbound-ports", o.OutboundPortsInclude); err != nil {
		return nil, err
	}
	if c.OutboundPortsExclude, err = ports("--istio-local-outbound-ports-exclude", o.OutboundPortsExclude); err != nil {
		return nil, err
	}
	for _, i := range split(o.ExcludeInterfaces) {
		if strings.ContainsAny(i, " \t!") {
			return nil, fmt.Errorf("--istio-exclude-interfaces: %q is not an interface name", i)
		}
		c.ExcludeInterfaces = append(c.ExcludeInterfaces, i)
	}
	if inc := strings.TrimSpace(o.OwnerGroupsInclude); inc != "" && inc != "*" {
		if c.OwnerGroups, err = groups("ISTIO_OUTBOUND_OWNER_GROUPS", inc); err != nil {
			return nil, err
		}
	} else if c.OwnerGroupsExclude, err = groups("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", o.OwnerGroupsExclude); err != nil {
		return nil, err
	}
	for _, s := range o.DNSServers {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("DNS server %q: %v", s, err)
		}
		c.DNSServers = append(c.DNSServers, a.Unmap())
	}
	for _, p := range append(append([]netip.Prefix(nil), c.OutboundInclude...), c.OutboundExclude...) {
		if p.Addr().Is6() {
			c.IPv6 = true
		}
	}
	return c, nil
}

// DNSEnabled reports whether DNS capture applies: Istio turns it off (with
// a warning) when it is asked for but there is no resolver to capture.
func (c *Config) DNSEnabled() bool {
	return c.RedirectDNS && (c.CaptureAllDNS || len(c.DNSServers) > 0)
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func port(flag, s string, def int) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s: %q is not a port (1-65535)", flag, s)
	}
	return n, nil
}

func ports(flag, s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		n, err := port(flag, f, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func ids(flag, s string) ([]string, error) {
	var out []string
	for _, f := range split(s) {
		if n, err := strconv.ParseUint(f, 10, 32); err != nil || n > 1<<31 {
			return nil, fmt.Errorf("%s: %q is not a numeric id", flag, f)
		}
		out = append(out, f)
	}
	return out, nil
}

func prefixes(flag, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range split(s) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR range: %v", flag, f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func groups(env, s string) ([]string, error) {
	var out []string
	for _, g := range split(s) {
		if g == "*" || strings.ContainsAny(g, " \t!") {
			return nil, fmt.Errorf("%s: %q is not a group name or gid", env, g)
		}
		out = append(out, g)
	}
	return out, nil
}
