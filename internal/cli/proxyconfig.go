package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/config"
)

// proxyConfigFlags are shared by the proxy-config subcommands.
type proxyConfigFlags struct {
	output    string
	adminPort int
}

func newProxyConfigCmd() *cobra.Command {
	var f proxyConfigFlags
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show a proxy's configuration as its admin interface reports it (istioctl proxy-config)",
	}
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "short", "output format: short or json")
	cmd.PersistentFlags().IntVar(&f.adminPort, "proxy-admin-port", 15000, "the proxy's admin port (on its pod IP)")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "secret <pod-name>[.<namespace>]",
			Short: "Show the proxy's workload certificate and root CA (SDS secrets)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				dump, err := fetchProxyConfigDump(cmd.Context(), args[0], f.adminPort, false)
				if err != nil {
					return err
				}
				secrets := &adminv3.SecretsConfigDump{}
				if err := findDump(dump, secrets); err != nil {
					return fmt.Errorf("%s: %w (is the proxy running without a workload identity?)", args[0], err)
				}
				if f.output == "json" {
					return printProtoJSON(cmd.OutOrStdout(), secrets)
				}
				return printSecrets(cmd.OutOrStdout(), secrets, time.Now())
			},
		},
		&cobra.Command{
			Use:   "cluster <pod-name>[.<namespace>]",
			Short: "Show the proxy's clusters",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				dump, err := fetchProxyConfigDump(cmd.Context(), args[0], f.adminPort, false)
				if err != nil {
					return err
				}
				clusters := &adminv3.ClustersConfigDump{}
				if err := findDump(dump, clusters); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if f.output == "json" {
					return printProtoJSON(cmd.OutOrStdout(), clusters)
				}
				return printClusters(cmd.OutOrStdout(), clusters)
			},
		},
		&cobra.Command{
			Use:   "route <pod-name>[.<namespace>]",
			Short: "Show the proxy's route configurations",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				dump, err := fetchProxyConfigDump(cmd.Context(), args[0], f.adminPort, false)
				if err != nil {
					return err
				}
				routes := &adminv3.RoutesConfigDump{}
				if err := findDump(dump, routes); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if f.output == "json" {
					return printProtoJSON(cmd.OutOrStdout(), routes)
				}
				return printRoutes(cmd.OutOrStdout(), routes)
			},
		},
	)
	return cmd
}

// fetchProxyConfigDump finds the pod's IP in the store and reads its
// proxy's /config_dump.
func fetchProxyConfigDump(ctx context.Context, target string, adminPort int, includeEDS bool) (*adminv3.ConfigDump, error) {
	name, ns, ok := strings.Cut(target, ".")
	if !ok {
		ns = global.namespace
		if ns == "" {
			ns = "default"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	obj, err := newAPIClient(global.server).Get(ctx, config.Key{Kind: "Pod", Namespace: ns, Name: name})
	if err != nil {
		return nil, err
	}
	pod, _ := obj.Spec.(*corev1.Pod)
	if pod == nil || pod.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s.%s has no IP yet", name, ns)
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(adminPort)) + "/config_dump"
	if includeEDS {
		url += "?include_eds"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the proxy of pod %s.%s at %s: %w", name, ns, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("proxy of pod %s.%s answered %s: %s", name, ns, resp.Status, strings.TrimSpace(string(body)))
	}
	dump := &adminv3.ConfigDump{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, dump); err != nil {
		return nil, fmt.Errorf("proxy of pod %s.%s: decoding /config_dump: %w", name, ns, err)
	}
	return dump, nil
}

// findDump unpacks the config of into's type from the dump.
func findDump(dump *adminv3.ConfigDump, into proto.Message) error {
	want := into.ProtoReflect().Descriptor().FullName()
	for _, a := range dump.GetConfigs() {
		if a.MessageName() == want {
			return a.UnmarshalTo(into)
		}
	}
	return fmt.Errorf("/config_dump has no %s", want.Name())
}

func printProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printSecrets prints istioctl's secret table, then the workload identity.
func printSecrets(w io.Writer, d *adminv3.SecretsConfigDump, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE")
	var identity string
	for _, ds := range d.GetDynamicActiveSecrets() {
		s := &tlsv3.Secret{}
		if err := ds.GetSecret().UnmarshalTo(s); err != nil {
			return fmt.Errorf("secret %q: %w", ds.GetName(), err)
		}
		kind, data := "Cert Chain", s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		if vc := s.GetValidationContext(); vc != nil {
			kind, data = "CA", vc.GetTrustedCa().GetInlineBytes()
		}
		block, _ := pem.Decode(data)
		if block == nil {
			fmt.Fprintf(tw, "%s\t%s\tACTIVE\tfalse\t\t\t\n", ds.GetName(), kind)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("secret %q: %w", ds.GetName(), err)
		}
		valid := !now.Before(c.NotBefore) && now.Before(c.NotAfter)
		fmt.Fprintf(tw, "%s\t%s\tACTIVE\t%t\t%x\t%s\t%s\n", ds.GetName(), kind, valid, c.SerialNumber,
			c.NotAfter.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
		if kind == "Cert Chain" && len(c.URIs) > 0 {
			identity = c.URIs[0].String()
		}
	}
	tw.Flush()
	if identity != "" {
		fmt.Fprintf(w, "\nIDENTITY: %s\n", identity)
	}
	return nil
}

// printClusters prints istioctl's cluster table; Istio's cluster names
// (direction|port|subset|fqdn) carry every column.
func printClusters(w io.Writer, d *adminv3.ClustersConfigDump) error {
	type row struct{ fqdn, port, subset, direction, typ, dr string }
	var rows []row
	var clusters []*clusterv3.Cluster
	for _, c := range d.GetDynamicActiveClusters() {
		cl := &clusterv3.Cluster{}
		if err := c.GetCluster().UnmarshalTo(cl); err != nil {
			return err
		}
		clusters = append(clusters, cl)
	}
	for _, c := range d.GetStaticClusters() {
		cl := &clusterv3.Cluster{}
		if err := c.GetCluster().UnmarshalTo(cl); err != nil {
			return err
		}
		clusters = append(clusters, cl)
	}
	for _, cl := range clusters {
		typ := cl.GetType().String()
		if cl.GetClusterType() != nil {
			typ = cl.GetClusterType().GetName()
		}
		r := row{fqdn: cl.GetName(), port: "-", subset: "-", direction: "-", typ: typ, dr: clusterDestinationRule(cl)}
		if parts := strings.Split(cl.GetName(), "|"); len(parts) == 4 {
			r.direction, r.port, r.subset, r.fqdn = parts[0], parts[1], parts[2], parts[3]
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].fqdn != rows[j].fqdn {
			return rows[i].fqdn < rows[j].fqdn
		}
		if rows[i].port != rows[j].port {
			pi, _ := strconv.Atoi(rows[i].port)
			pj, _ := strconv.Atoi(rows[j].port)
			return pi < pj
		}
		if rows[i].direction != rows[j].direction {
			return rows[i].direction < rows[j].direction
		}
		return rows[i].subset < rows[j].subset
	})
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.fqdn, r.port, r.subset, r.direction, r.typ, r.dr)
	}
	return tw.Flush()
}

// clusterDestinationRule reads Istio's filter_metadata.istio.config
// ("/apis/networking.istio.io/v1/namespaces/<ns>/destination-rule/<name>")
// as istioctl prints it: <name>.<ns>.
func clusterDestinationRule(cl *clusterv3.Cluster) string {
	cfg := cl.GetMetadata().GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue()
	parts := strings.Split(cfg, "/")
	if len(parts) >= 2 && strings.Contains(cfg, "/destination-rule/") {
		for i, p := range parts {
			if p == "namespaces" && i+1 < len(parts) {
				return parts[len(parts)-1] + "." + parts[i+1]
			}
		}
	}
	return ""
}

// printRoutes prints istioctl's route table: one row per virtual host.
func printRoutes(w io.Writer, d *adminv3.RoutesConfigDump) error {
	var rcs []*routev3.RouteConfiguration
	for _, r := range d.GetDynamicRouteConfigs() {
		rc := &routev3.RouteConfiguration{}
		if err := r.GetRouteConfig().UnmarshalTo(rc); err != nil {
			return err
		}
		rcs = append(rcs, rc)
	}
	for _, r := range d.GetStaticRouteConfigs() {
		rc := &routev3.RouteConfiguration{}
		if err := r.GetRouteConfig().UnmarshalTo(rc); err != nil {
			return err
		}
		rcs = append(rcs, rc)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE")
	for _, rc := range rcs {
		for _, vh := range rc.GetVirtualHosts() {
			domains := routeDomains(vh.GetDomains())
			for _, r := range vh.GetRoutes() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), domains, routeMatch(r.GetMatch()), routeVirtualService(r))
			}
			if len(vh.GetRoutes()) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", rc.GetName(), vh.GetName(), domains)
			}
		}
	}
	return tw.Flush()
}

// routeDomains shortens the domain list as istioctl does: the first
// domain, "+N more" for the rest.
func routeDomains(d []string) string {
	switch len(d) {
	case 0:
		return ""
	case 1:
		return d[0]
	}
	return fmt.Sprintf("%s +%d more...", d[0], len(d)-1)
}

func routeMatch(m *routev3.RouteMatch) string {
	switch {
	case m.GetPrefix() != "":
		return m.GetPrefix() + "*"
	case m.GetPath() != "":
		return m.GetPath()
	case m.GetSafeRegex() != nil:
		return "regex " + m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		return m.GetPathSeparatedPrefix() + "/*"
	}
	return "/*"
}

// routeVirtualService reads Istio's route metadata
// (filter_metadata.istio.config) as <name>.<namespace>.
func routeVirtualService(r *routev3.Route) string {
	cfg := r.GetMetadata().GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue()
	parts := strings.Split(cfg, "/")
	for i, p := range parts {
		if p == "namespaces" && i+1 < len(parts) {
			return parts[len(parts)-1] + "." + parts[i+1]
		}
	}
	return ""
}
