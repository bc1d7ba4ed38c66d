package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/proxy"
	"github.com/skein-mesh/skein/internal/proxy/admin"
)

func newProxyCmd() *cobra.Command {
	var (
		opts   proxy.Options
		labels string
	)
	cmd := &cobra.Command{
		Use:   "proxy sidecar|router",
		Short: "Run Skein's data plane proxy (sidecar, or router for gateways)",
		Long: `Run the Go data plane. It connects to skein discovery over ADS, serves the
listeners it is given (local mode: the outbound HTTP proxy on <pod-ip>:15001,
each inbound port on <pod-ip>) and the admin interface on <pod-ip>:15000.
SIGTERM drains: new connections are refused and in-flight requests get 5 s.`,
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{string(proxy.Sidecar), string(proxy.Router)},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mode = proxy.Mode(args[0])
			if opts.PodIP == "" {
				return fmt.Errorf("--pod-ip is required (or set POD_IP)")
			}
			var err error
			if opts.Labels, err = proxy.ParseLabels(labels); err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			opts.Namespace = global.namespace
			if opts.Namespace == "" {
				opts.Namespace = envOr("POD_NAMESPACE", "default")
			}
			if opts.PodName == "" {
				opts.PodName = string(opts.Mode) + "-" + opts.PodIP
			}
			opts.Version = Version
			if opts.AppMetrics, err = admin.ParseAppScrape(os.Getenv("ISTIO_PROMETHEUS_ANNOTATIONS")); err != nil {
				return err
			}
			opts.Logger = slog.Default()

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			p, err := proxy.Start(ctx, opts)
			if err != nil {
				return err
			}
			p.Wait()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DiscoveryAddress, "discovery-address", envOr("SKEIN_DISCOVERY_ADDRESS", "127.0.0.1:15010"), "control plane xDS address (host:port)")
	f.StringVar(&opts.DiscoveryRootCert, "discovery-root-cert", os.Getenv("SKEIN_DISCOVERY_ROOT_CERT"), "mesh root certificate (PEM) to verify the control plane's TLS with (Istio's 15012); empty: plaintext xDS (Istio's 15010)")
	f.StringVar(&opts.PodIP, "pod-ip", os.Getenv("POD_IP"), "pod IP: where the proxy listens (required)")
	f.StringVar(&opts.AppIP, "app-ip", os.Getenv("SKEIN_APP_IP"), "sidecar: where the app listens (sent as APP_IP node metadata)")
	f.StringVar(&opts.BindAddress, "bind-address", "", "address that replaces 0.0.0.0 in listener addresses, e.g. 127.0.0.1 for a gateway (default: the pod IP)")
	f.StringVar(&opts.PodName, "pod-name", os.Getenv("POD_NAME"), "pod name (default <mode>-<pod-ip>)")
	f.StringVar(&opts.ServiceAccount, "service-account", envOr("SERVICE_ACCOUNT", "default"), "service account")
	f.StringVar(&opts.WorkloadName, "workload-name", "", "workload name for node metadata (default: the pod name without its ReplicaSet suffix)")
	f.StringVar(&labels, "labels", "", "pod labels as k=v,k=v")
	f.IntVar(&opts.AdminPort, "admin-port", 15000, "admin port (on the pod IP)")
	f.IntVar(&opts.HealthPort, "health-port", 15021, "health port serving /healthz/ready (on the pod IP)")
	f.IntVar(&opts.PrometheusPort, "prometheus-port", 15090, "port serving /stats/prometheus (on the pod IP)")
	f.IntVar(&opts.MergedMetricsPort, "merged-metrics-port", 15020, "port serving Istio's merged metrics /stats/prometheus: the proxy's and, with ISTIO_PROMETHEUS_ANNOTATIONS, the app's (on the pod IP; -1: off)")
	f.StringVar(&opts.ClusterID, "cluster-id", "Kubernetes", "cluster id (CLUSTER_ID node metadata)")
	f.StringVar(&opts.Domain, "domain", "", "proxy DNS domain (default <namespace>.svc.cluster.local)")
	f.StringVar(&opts.Identity.CAAddress, "ca-address", os.Getenv("CA_ADDR"), "mesh CA gRPC address (host:port) for the workload certificate (default: --discovery-address when --token-file is set)")
	f.StringVar(&opts.Identity.TokenFile, "token-file", os.Getenv("SKEIN_TOKEN_FILE"), "file holding the workload token sent to the CA; setting it (or --ca-address) enables the workload certificate")
	f.StringVar(&opts.Identity.TrustDomain, "trust-domain", envOr("TRUST_DOMAIN", "cluster.local"), "SPIFFE trust domain")
	f.DurationVar(&opts.Identity.CertTTL, "cert-ttl", envDuration("SECRET_TTL"), "workload certificate lifetime to ask for, e.g. 24h or 4s (env SECRET_TTL; 0: the CA's default)")
	return cmd
}

// envDuration reads a duration from the environment (0 when unset or bad).
func envDuration(key string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(key))
	return d
}
