package cli

import (
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/discovery"
	"github.com/skein-mesh/skein/internal/inject"
	"github.com/skein-mesh/skein/internal/kube"
)

func newDiscoveryCmd() *cobra.Command {
	var (
		opts       discovery.Options
		kubeconfig string
		useKube    bool
	)
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Run the control plane: config store, service registry, CA and xDS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if kubeconfig != "" || useKube {
				dc, _, err := kube.Dynamic(kubeconfig)
				if err != nil {
					return err
				}
				opts.Kube = dc
			}
			if opts.StoreDir == "" && opts.CA.Dir == "" {
				// An in-memory control plane still has an owner: its
				// credential goes where the CLI looks for one.
				opts.CA.CredentialFile = global.credentialFile
				if opts.CA.CredentialFile == "" {
					opts.CA.CredentialFile = apiwire.DefaultCredentialPath()
				}
			}
			srv, err := discovery.New(opts, slog.Default())
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.StoreDir, "store-dir", "", "directory of the durable config store (empty: in memory)")
	f.StringVar(&opts.GRPCAddr, "grpc-addr", "127.0.0.1:15012", "xDS and CA (gRPC) listen address: TLS with a mesh CA certificate, every stream authenticated by a workload token (Istio's 15012)")
	f.BoolVar(&opts.PlaintextXDS, "plaintext-xds", false, "serve --grpc-addr without TLS, as Istio's 15010: streams still need a workload token, and gateway credentialName keys are not served")
	f.StringSliceVar(&opts.XDSHosts, "xds-host", nil, "extra DNS name or IP for the xDS serving certificate (repeatable)")
	f.StringVar(&opts.HTTPAddr, "http-addr", "127.0.0.1:15014", "config API and debug listen address")
	f.StringSliceVar(&opts.HTTPHosts, "http-host", nil, "extra host name clients may send as Host to the HTTP port (repeatable; IPs, localhost and *.svc names are always accepted)")
	f.StringVar(&opts.Domain, "domain", "cluster.local", "cluster DNS domain")
	f.StringVar(&opts.RootNamespace, "root-namespace", "istio-system", "namespace of mesh-wide config")
	f.DurationVar(&opts.Debounce, "debounce", 0, "quiet time after a config change before pushing (default: $PILOT_DEBOUNCE_AFTER, else 100ms)")
	f.DurationVar(&opts.MaxDebounce, "max-debounce", 0, "longest a push waits while changes keep coming (default: $PILOT_DEBOUNCE_MAX, else 10s)")
	f.StringVar(&opts.CA.Dir, "ca-dir", "", "directory keeping the mesh CA's root, token key and admin-token (default <store-dir>/../ca; in memory without a store, the admin credential then kept at --credential-file or its default)")
	f.StringVar(&opts.CA.CACertsDir, "cacerts", "", "plug in a CA from Istio's cacerts files in this directory (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
	f.StringVar(&opts.CA.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	f.DurationVar(&opts.CA.CertTTL, "cert-ttl", 24*time.Hour, "lifetime of workload certificates when the proxy asks for none")
	f.DurationVar(&opts.CA.MaxCertTTL, "max-cert-ttl", 90*24*time.Hour, "longest workload certificate lifetime a proxy may ask for")
	f.StringVar(&opts.Injection.Addr, "injection-addr", "", "serve Istio's sidecar injector webhook (HTTPS /inject, certificate from the mesh CA) on this address, e.g. 0.0.0.0:15017 (empty: off, as in local mode)")
	f.StringVar(&opts.Injection.Params.DiscoveryAddress, "injection-discovery-address", inject.DefaultDiscoveryAddress, "xDS address (host:port) the webhook gives injected proxies")
	f.StringVar(&opts.Injection.Params.ProxyImage, "injection-proxy-image", inject.DefaultProxyImage, "image of injected istio-proxy containers")
	f.StringVar(&opts.Injection.Params.ClusterID, "cluster-id", "Kubernetes", "cluster id given to injected proxies")
	f.StringSliceVar(&opts.Injection.Hosts, "injection-host", nil, "extra DNS name or IP for the webhook's serving certificate (repeatable), e.g. the host of the webhook url")
	f.StringVar(&kubeconfig, "kubeconfig", "", "Kubernetes mode: mirror config from the cluster of this kubeconfig (config API read-only, CA checks tokens with TokenReview)")
	f.BoolVar(&useKube, "kube", false, "Kubernetes mode with kubectl's credentials: $KUBECONFIG, ~/.kube/config or in-cluster")
	return cmd
}
