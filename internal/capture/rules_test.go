package capture

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// istioInit is the (and Istio's injection template's) command line:
// -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020
var istioInit = Options{
	ProxyPort: "15001", InboundCapturePort: "15006", ProxyUID: "1337", InterceptionMode: "REDIRECT",
	OutboundIPRangesInclude: "*", OutboundIPRangesExclude: "", InboundPorts: "*", InboundPortsExclude: "15090,15021,15020",
}

func with(o Options, f func(*Options)) Options { f(&o); return o }

// dryRun is what `skein iptables --dry-run` prints.
func dryRun(c *Config) string {
	var b strings.Builder
	for _, rs := range Rulesets(c) {
		b.WriteString("# " + rs.Family.String() + "-restore --noflush\n")
		b.WriteString(RestoreInput("", rs))
	}
	return b.String()
}

func TestRulesGolden(t *testing.T) {
	cases := []struct {
		name string
		opts Options
	}{
		// No flags: Istio captures nothing but sets up the chains.
		{"defaults", Options{}},
		{"istio-init", istioInit},
		{"outbound-ranges", with(istioInit, func(o *Options) {
			o.OutboundIPRangesInclude = "10.96.0.0/12, 192.168.0.0/16"
			o.OutboundIPRangesExclude = "10.96.0.1/32"
		})},
		{"outbound-exclude-ranges-dual-stack", with(istioInit, func(o *Options) {
			o.OutboundIPRangesExclude = "169.254.169.254/32,fd00:ec2::254/128"
		})},
		{"inbound-ports", with(istioInit, func(o *Options) { o.InboundPorts = "9080,9443"; o.InboundPortsExclude = "" })},
		{"ports-include-exclude", with(istioInit, func(o *Options) {
			o.InboundPortsExclude = "22,15090,15021,15020"
			o.OutboundPortsExclude = "3306"
			o.OutboundPortsInclude = "8443"
			o.OutboundIPRangesInclude = "10.96.0.0/12"
		})},
		{"many-excluded-ports", with(istioInit, func(o *Options) {
			o.InboundPortsExclude = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"
			o.OutboundPortsExclude = "5432,3306"
		})},
		{"dns-resolvers", with(istioInit, func(o *Options) {
			o.RedirectDNS = true
			o.DNSServers = []string{"10.96.0.10", "fd00::a"}
		})},
		{"dns-capture-all", with(istioInit, func(o *Options) {
			o.RedirectDNS, o.CaptureAllDNS, o.ProxyGID = true, true, "1337,1338"
		})},
		// Asked for, nothing to capture: off, as in Istio.
		{"dns-no-resolvers", with(istioInit, func(o *Options) { o.RedirectDNS = true })},
		{"loopback-included", with(istioInit, func(o *Options) { o.OutboundIPRangesInclude = "127.0.0.1/32,10.0.0.0/8" })},
		{"exclude-interfaces", with(istioInit, func(o *Options) { o.ExcludeInterfaces = "eth1" })},
		{"ipv6", with(istioInit, func(o *Options) { o.IPv6 = true })},
		{"owner-groups", with(istioInit, func(o *Options) { o.OwnerGroupsInclude = "java,1200" })},
		{"owner-groups-exclude", with(istioInit, func(o *Options) { o.OwnerGroupsInclude, o.OwnerGroupsExclude = "*", "postgres,1300" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, dryRun(c))
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		opts Options
		want string
	}{
		{Options{InterceptionMode: "TPROXY"}, "TPROXY is not supported yet"},
		{Options{InterceptionMode: "NONE"}, `"NONE" is neither REDIRECT nor TPROXY`},
		{Options{ProxyPort: "99999"}, `--envoy-port: "99999" is not a port`},
		{Options{InboundPortsExclude: "15090,x"}, `--istio-local-exclude-ports: "x" is not a port`},
		{Options{OutboundIPRangesInclude: "10.0.0.0/33"}, `--istio-service-cidr: "10.0.0.0/33" is not a CIDR range`},
		{Options{OutboundIPRangesExclude: "*"}, `--istio-service-exclude-cidr: "*" is not allowed`},
		{Options{ProxyUID: "istio-proxy"}, `--proxy-uid: "istio-proxy" is not a numeric id`},
		{Options{RedirectDNS: true, DNSServers: []string{"resolver"}}, `DNS server "resolver"`},
		{Options{OwnerGroupsInclude: "java,*"}, `ISTIO_OUTBOUND_OWNER_GROUPS: "*" is not a group`},
	}
	for _, tc := range cases {
		_, err := Parse(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

// A re-run replaces what the last run installed; cleanup removes it, and
// leaves other rules (here Docker's and a user's) alone.
func TestRestoreInputReplacesPreviousRun(t *testing.T) {
	saved, err := os.ReadFile(filepath.Join("testdata", "saved-after-dns.txt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(istioInit)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "rerun", RestoreInput(string(saved), Build(c, IPv4)))
	golden(t, "cleanup", RestoreInput(string(saved), Ruleset{Family: IPv4}))
	if got := RestoreInput("", Ruleset{Family: IPv4}); got != "" {
		t.Errorf("cleanup of a clean namespace = %q, want nothing to restore", got)
	}
}

func TestNameservers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# generated\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\nnameserver not-an-ip\noptions ndots:5\n"
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Nameservers(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "10.96.0.10,fd00::a" {
		t.Errorf("Nameservers = %v", got)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update after checking):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}
