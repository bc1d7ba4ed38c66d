package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/inject"
)

// injectFlags are the injection parameters shared by kube-inject and
// install (Istio's values.global.* that the template reads).
func injectFlags(cmd *cobra.Command, p *inject.Params) {
	f := cmd.Flags()
	f.StringVar(&p.ProxyImage, "proxy-image", inject.DefaultProxyImage, "image of the istio-proxy container")
	f.StringVar(&p.DiscoveryAddress, "discovery-address", inject.DefaultDiscoveryAddress, "control plane xDS address (host:port) injected proxies connect to")
	f.StringVar(&p.CAAddress, "ca-address", "", "mesh CA address (host:port) (default: the discovery address)")
	f.StringVar(&p.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	f.StringVar(&p.ClusterID, "cluster-id", "Kubernetes", "cluster id (ISTIO_META_CLUSTER_ID)")
	f.StringVar(&p.MeshID, "mesh-id", "", "mesh id (ISTIO_META_MESH_ID; default: the trust domain)")
	f.StringVarP(&p.Revision, "revision", "r", "default", "control plane revision")
}

func newKubeInjectCmd() *cobra.Command {
	var (
		params             inject.Params
		file, output       string
		meshCfg, injectCfg string
		valuesFile         string
		proxyLogLevel      string
	)
	cmd := &cobra.Command{
		Use:   "kube-inject -f FILE|-",
		Short: "Inject the istio-proxy sidecar into the pod templates of Kubernetes manifests",
		Long: `Print the manifests with every pod template (Pod, Deployment, ReplicaSet,
StatefulSet, DaemonSet, Job, CronJob, ReplicationController) injected as the
control plane's webhook would, like istioctl kube-inject. Other documents are
printed unchanged and in the same order; pods labelled
sidecar.istio.io/inject: "false" are left alone.`,
		Example: `  skein kube-inject -f samples/bookinfo/bookinfo.yaml | kubectl apply -f -
  skein kube-inject -f deploy.yaml -o deploy-injected.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("-f/--filename is required (a file, or - for stdin)")
			}
			for flag, v := range map[string]string{"--meshConfigFile": meshCfg, "--injectConfigFile": injectCfg, "--valuesFile": valuesFile} {
				if v != "" {
					slog.Warn("flag ignored: Skein's injection template is built in and configured with flags", "flag", flag, "value", v)
				}
			}
			var in []byte
			var err error
			if file == "-" {
				in, err = io.ReadAll(cmd.InOrStdin())
			} else {
				in, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			params.LogLevel = proxyLogLevel
			ns := global.namespace
			// kube-inject sees no cluster: every namespace counts as
			// enabled, and only the pod's own opt-out applies (istioctl's
			// behaviour).
			out, err := inject.Manifests(in, ns, map[string]string{inject.LabelNamespaceInjection: "enabled"}, params)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if output == "" {
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			return os.WriteFile(output, out, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "input Kubernetes manifests (- for stdin)")
	f.StringVarP(&output, "output", "o", "", "write the injected manifests to this file (default stdout)")
	f.StringVar(&meshCfg, "meshConfigFile", "", "ignored (istioctl compatibility)")
	f.StringVar(&injectCfg, "injectConfigFile", "", "ignored (istioctl compatibility)")
	f.StringVar(&valuesFile, "valuesFile", "", "ignored (istioctl compatibility)")
	f.StringVar(&proxyLogLevel, "proxy-log-level", "", "log level of injected proxies (SKEIN_LOG_LEVEL)")
	injectFlags(cmd, &params)
	return cmd
}
