package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

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
			if err := offlineInjectConfig(&params, injectCfg, valuesFile, meshCfg); err != nil {
				return err
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
			if proxyLogLevel != "" {
				params.LogLevel = proxyLogLevel
			}
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
	f.StringVar(&meshCfg, "meshConfigFile", "", "mesh config file (the istio ConfigMap's mesh key, or the ConfigMap): trustDomain and defaultConfig.discoveryAddress")
	f.StringVar(&injectCfg, "injectConfigFile", "", "injector config file (the istio-sidecar-injector ConfigMap's config key, or the ConfigMap)")
	f.StringVar(&valuesFile, "valuesFile", "", "injection values file (the istio-sidecar-injector ConfigMap's values key)")
	f.StringVar(&proxyLogLevel, "proxy-log-level", "", "log level of injected proxies (SKEIN_LOG_LEVEL)")
	injectFlags(cmd, &params)
	return cmd
}

// offlineInjectConfig reads kube-inject's istioctl files: each may hold the
// ConfigMap key's content or the whole ConfigMap, as kubectl prints it.
func offlineInjectConfig(p *inject.Params, injectFile, valuesFile, meshFile string) error {
	read := func(path, key string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var cm struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if yaml.Unmarshal(b, &cm) == nil && cm.Kind == "ConfigMap" {
			v, ok := cm.Data[key]
			if !ok {
				return nil, fmt.Errorf("%s: the ConfigMap has no %q key", path, key)
			}
			return []byte(v), nil
		}
		return b, nil
	}
	cfg, err := read(injectFile, "config")
	if err != nil {
		return err
	}
	values, err := read(valuesFile, "values")
	if err != nil {
		return err
	}
	if injectFile != "" && valuesFile == "" {
		// A whole ConfigMap given as --injectConfigFile carries its values.
		if v, err := read(injectFile, "values"); err == nil && !bytes.Equal(v, cfg) {
			values = v
		}
	}
	if cfg != nil || values != nil {
		c, err := inject.ParseConfig(cfg, values)
		if err != nil {
			return fmt.Errorf("%s: %w", firstNonEmptyString(injectFile, valuesFile), err)
		}
		p.Config = c
	}
	mesh, err := read(meshFile, "mesh")
	if err != nil || mesh == nil {
		return err
	}
	var m struct {
		TrustDomain   string `json:"trustDomain"`
		DefaultConfig struct {
			DiscoveryAddress string `json:"discoveryAddress"`
		} `json:"defaultConfig"`
	}
	if err := yaml.Unmarshal(mesh, &m); err != nil {
		return fmt.Errorf("%s: %v", meshFile, err)
	}
	if m.TrustDomain != "" {
		p.TrustDomain = m.TrustDomain
	}
	if m.DefaultConfig.DiscoveryAddress != "" {
		p.DiscoveryAddress = m.DefaultConfig.DiscoveryAddress
	}
	return nil
}

func firstNonEmptyString(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
