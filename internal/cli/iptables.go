package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/capture"
)

// iptablesFlags are istio-iptables' flags; each defaults to the environment
// variable Istio's init container reads for it.
type iptablesFlags struct {
	opts           capture.Options
	tproxyTable    string
	virtInterfaces string
	dualStack      bool
	dryRun         bool
	cleanupOnly    bool
	logLevel       string
}

func newIptablesCmd() *cobra.Command {
	var f iptablesFlags
	cmd := &cobra.Command{
		Use:   "iptables",
		Short: "Capture a pod's traffic for its sidecar, as Istio's istio-iptables (istio-init) does",
		Long: `Installs Istio's capture rules in the current network namespace: outbound TCP
to the sidecar's virtualOutbound (-p, 15001), inbound TCP to virtualInbound
(-z, 15006), traffic of the proxy's uid/gid (-u/-g, 1337) left alone, and
optionally DNS to the agent's port 15053. The rules are applied atomically
with iptables-restore (ip6tables-restore when IPv6 applies); a re-run
replaces the ISTIO_* chains. Needs NET_ADMIN (and NET_RAW).`,
		Example: `  skein iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020
  skein iptables --dry-run -i 10.96.0.0/12 -b '*'
  skein iptables --cleanup-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.cleanupOnly {
				return capture.Cleanup(cmd.Context(), slog.Default())
			}
			return runIptables(cmd, &f)
		},
	}
	fl := cmd.Flags()
	o := &f.opts
	fl.StringVarP(&o.ProxyPort, "envoy-port", "p", envOr("ENVOY_PORT", "15001"), "port to which all outbound TCP traffic is redirected ($ENVOY_PORT)")
	fl.StringVarP(&o.InboundCapturePort, "inbound-capture-port", "z", envOr("INBOUND_CAPTURE_PORT", "15006"), "port to which all inbound TCP traffic is redirected ($INBOUND_CAPTURE_PORT)")
	fl.StringVarP(&o.InboundTunnelPort, "inbound-tunnel-port", "e", envOr("INBOUND_TUNNEL_PORT", "15008"), "inbound tunnel port, never captured ($INBOUND_TUNNEL_PORT)")
	fl.StringVarP(&o.ProxyUID, "proxy-uid", "u", os.Getenv("PROXY_UID"), "uid(s) of the proxy, whose traffic is not captured (default: the uid of $ENVOY_USER, else 1337)")
	fl.StringVarP(&o.ProxyGID, "proxy-gid", "g", os.Getenv("PROXY_GID"), "gid(s) of the proxy, whose traffic is not captured (default: the uids)")
	fl.StringVarP(&o.InterceptionMode, "istio-inbound-interception-mode", "m",
		envOr("ISTIO_INBOUND_INTERCEPTION_MODE", os.Getenv("INBOUND_INTERCEPTION_MODE")), "inbound capture mode: REDIRECT (TPROXY is not supported yet)")
	fl.StringVarP(&o.InboundTProxyMark, "istio-inbound-tproxy-mark", "t", envOr("ISTIO_INBOUND_TPROXY_MARK", "1337"), "TPROXY mark (TPROXY mode only)")
	fl.StringVarP(&f.tproxyTable, "istio-inbound-tproxy-route-table", "r", envOr("ISTIO_INBOUND_TPROXY_ROUTE_TABLE", "133"), "TPROXY route table (TPROXY mode only)")
	fl.StringVarP(&o.InboundPorts, "istio-inbound-ports", "b", os.Getenv("ISTIO_INBOUND_PORTS"), `inbound ports to capture, comma separated; "*" for all; empty for none`)
	fl.StringVarP(&o.InboundPortsExclude, "istio-local-exclude-ports", "d", os.Getenv("ISTIO_LOCAL_EXCLUDE_PORTS"), `inbound ports not captured (with -b "*")`)
	fl.StringVarP(&o.ExcludeInterfaces, "istio-exclude-interfaces", "c", os.Getenv("ISTIO_EXCLUDE_INTERFACES"), "interfaces whose traffic is captured in neither direction")
	fl.StringVarP(&o.OutboundIPRangesInclude, "istio-service-cidr", "i", os.Getenv("ISTIO_SERVICE_CIDR"), `outbound CIDR ranges to capture, comma separated; "*" for all; empty for none`)
	fl.StringVarP(&o.OutboundIPRangesExclude, "istio-service-exclude-cidr", "x", os.Getenv("ISTIO_SERVICE_EXCLUDE_CIDR"), "outbound CIDR ranges not captured")
	fl.StringVarP(&o.OutboundPortsInclude, "istio-outbound-ports", "q", os.Getenv("ISTIO_OUTBOUND_PORTS"), "outbound ports captured whatever the destination")
	fl.StringVarP(&o.OutboundPortsExclude, "istio-local-outbound-ports-exclude", "o", os.Getenv("ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE"), "outbound ports not captured")
	fl.StringVarP(&f.virtInterfaces, "kube-virt-interfaces", "k", os.Getenv("KUBE_VIRT_INTERFACES"), "virtual interfaces whose inbound traffic is treated as outbound (not supported yet)")
	fl.BoolVar(&o.RedirectDNS, "redirect-dns", envBool("REDIRECT_DNS", envBool("ISTIO_META_DNS_CAPTURE", false)), "capture DNS (UDP and TCP port 53) to the agent on 15053 ($ISTIO_META_DNS_CAPTURE)")
	fl.BoolVar(&o.CaptureAllDNS, "capture-all-dns", envBool("CAPTURE_ALL_DNS", false), "with --redirect-dns, capture port 53 to any address, not only the resolvers of /etc/resolv.conf")
	fl.BoolVar(&f.dualStack, "dual-stack", envBool("ISTIO_AGENT_DUAL_STACK", false), "also install the IPv6 rules (default: when the pod has an IPv6 address or the ranges name IPv6)")
	// Istio's -n shorthand is skein's global --namespace.
	fl.BoolVar(&f.dryRun, "dry-run", envBool("DRY_RUN", false), "print the iptables-restore input instead of applying it")
	fl.BoolVar(&f.cleanupOnly, "cleanup-only", false, "remove the ISTIO_* chains and the jumps into them, then exit")
	fl.StringVar(&f.logLevel, "log_output_level", "", "accepted for istio-init compatibility; use --log-level")
	_ = fl.MarkHidden("log_output_level")
	cmd.AddCommand(&cobra.Command{
		Use:   "clean",
		Short: "Remove the capture rules (the ISTIO_* chains and the jumps into them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return capture.Cleanup(cmd.Context(), slog.Default())
		},
	})
	return cmd
}

func runIptables(cmd *cobra.Command, f *iptablesFlags) error {
	o := f.opts
	if f.virtInterfaces != "" {
		return fmt.Errorf("--kube-virt-interfaces: not supported yet")
	}
	if o.ProxyUID == "" {
		o.ProxyUID = "1337"
		if u, err := user.Lookup(envOr("ENVOY_USER", "istio-proxy")); err == nil {
			o.ProxyUID = u.Uid
		}
	}
	// Environment only, as in Istio.
	o.OwnerGroupsInclude = os.Getenv("ISTIO_OUTBOUND_OWNER_GROUPS")
	o.OwnerGroupsExclude = os.Getenv("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE")
	o.IPv6 = f.dualStack || capture.HasGlobalIPv6()
	if o.RedirectDNS && !o.CaptureAllDNS {
		servers, err := capture.Nameservers("/etc/resolv.conf")
		if err != nil {
			return fmt.Errorf("--redirect-dns: reading the resolvers: %v", err)
		}
		o.DNSServers = servers
	}
	cfg, err := capture.Parse(o)
	if err != nil {
		return err
	}
	if cfg.RedirectDNS && !cfg.DNSEnabled() {
		slog.Warn("--redirect-dns is set but /etc/resolv.conf names no resolver and --capture-all-dns is off: DNS is not captured")
	}
	sets := capture.Rulesets(cfg)
	if f.dryRun {
		out := cmd.OutOrStdout()
		for _, rs := range sets {
			fmt.Fprintf(out, "# %s-restore --noflush\n%s", rs.Family, capture.RestoreInput("", rs))
		}
		return nil
	}
	if err := capture.Apply(cmd.Context(), slog.Default(), sets); err != nil {
		return err
	}
	slog.Info("Istio capture rules applied", "families", len(sets))
	return nil
}

func envBool(key string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(key)); err == nil {
		return b
	}
	return def
}
