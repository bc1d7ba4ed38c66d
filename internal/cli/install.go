package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/ca"
	"github.com/skein-mesh/skein/internal/install"
	"github.com/skein-mesh/skein/internal/kube"
)

// installFlags are shared by install, manifest generate and uninstall: the
// same flags must name the same objects for uninstall to find them.
type installFlags struct {
	files             []string
	sets              []string
	setFiles          []string
	externalDiscovery string
	caDir             string
	image             string
}

func (f *installFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.sets, "set", "s", nil, "override an IstioOperator value, e.g. profile=demo, meshConfig.accessLogFile=/dev/stdout or values.global.proxy.resources.requests.cpu=10m (repeatable)")
	fl.StringArrayVarP(&f.files, "filename", "f", nil, "IstioOperator YAML file (repeatable; --set applies over it)")
	fl.StringArrayVar(&f.setFiles, "set-file", nil, "set a value to a file's content: key=path (repeatable)")
	fl.StringVar(&f.externalDiscovery, "external-discovery", "", "HOST:PORT of a skein discovery running outside the cluster (Istio's external control plane): no istiod Deployment; the webhook and proxies use this address")
	fl.StringVar(&f.caDir, "ca-dir", "", "mesh CA directory whose root the webhook is trusted with and istiod signs under (default $SKEIN_HOME/ca, the one skein up and skein discovery use)")
	fl.StringVar(&f.image, "proxy-image", "", "image of istiod and injected proxies (default "+defaultImageHelp+")")
}

const defaultImageHelp = "skein/skein:latest; --set hub=/tag= also set it"

// options builds install.Options, loading (or creating) the mesh CA.
func (f *installFlags) options(withKeys bool) (install.Options, error) {
	vals, err := install.Parse(install.Sources{Files: f.files, Sets: f.sets, SetFiles: f.setFiles})
	if err != nil {
		return install.Options{}, err
	}
	dir := f.caDir
	if dir == "" {
		home, err := defaultDataDir()
		if err != nil {
			return install.Options{}, err
		}
		dir = filepath.Join(home, "ca")
	}
	c, err := ca.New(ca.Options{Dir: dir, TrustDomain: vals.TrustDomain})
	if err != nil {
		return install.Options{}, fmt.Errorf("mesh CA in %s: %w", dir, err)
	}
	o := install.Options{Image: f.image, ExternalDiscovery: f.externalDiscovery, CABundle: c.RootPEM(), Values: vals}
	if withKeys {
		// The owner's credential (skein discovery writes it 0600 beside the
		// CA) goes to the cluster as a Secret, for the dashboard addon.
		tok, err := ca.LoadOrCreateAdminToken(dir)
		if err != nil {
			return install.Options{}, err
		}
		o.AdminCredential = []byte(tok)
	}
	if withKeys && f.externalDiscovery == "" {
		// istiod in the cluster signs under the same root as the host's
		// control plane, so identities stay valid across the two.
		if o.CACerts, err = c.PluginFiles(); err != nil {
			return install.Options{}, err
		}
	}
	return o, nil
}

func newInstallCmd() *cobra.Command {
	var (
		flags      installFlags
		kubeconfig string
		yes        bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the Skein control plane, injector webhook and gateways into a Kubernetes cluster",
		Long: `Apply Istio's CRDs, istiod (or, with --external-discovery, only the
webhook pointing at a control plane outside the cluster), the mesh ConfigMap
and the ingress gateway to the cluster of the kubeconfig, with server-side
apply, as istioctl install does. Running it again updates the installation.`,
		Example: `  skein install -y
  skein install --set profile=demo -y
  skein install --external-discovery 192.0.2.10:15012 -y`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := flags.options(true)
			if err != nil {
				return err
			}
			comps, err := install.Components(o)
			if err != nil {
				return err
			}
			profile := o.Values.Profile
			if profile == "" {
				profile = "default"
			}
			if !yes {
				ok, err := confirm(cmd.InOrStdin(), cmd.OutOrStdout(),
					fmt.Sprintf("This will install the Skein %q profile into the cluster. Proceed? (y/N) ", profile))
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(cmd.OutOrStdout(), "Cancelled.")
					return nil
				}
			}
			dc, _, err := kube.Dynamic(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return install.Apply(ctx, dc, comps, cmd.OutOrStdout(), timeout)
		},
	}
	flags.register(cmd)
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	f.BoolVarP(&yes, "skip-confirmation", "y", false, "do not ask for confirmation")
	f.DurationVar(&timeout, "readiness-timeout", 5*time.Minute, "how long to wait for the CRDs and the whole apply")
	return cmd
}

func newManifestCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "manifest", Short: "Show what skein install applies"}
	var flags installFlags
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print the manifests skein install would apply (without the CA key Secret)",
		Example: `  skein manifest generate --set profile=demo > skein.yaml
  skein manifest generate | kubectl apply --server-side -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := flags.options(false)
			if err != nil {
				return err
			}
			objs, err := install.Objects(o)
			if err != nil {
				return err
			}
			out, err := install.YAML(objs)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	flags.register(gen)
	cmd.AddCommand(gen)
	return cmd
}

func newUninstallCmd() *cobra.Command {
	var (
		flags      installFlags
		kubeconfig string
		yes, purge bool
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what skein install applied (with --purge also the CRDs and istio-system)",
		Long: `Delete the installation's objects in reverse order. Without --purge the Istio
CRDs, and with them the mesh configuration users applied, and the
istio-system namespace are kept.`,
		Example: `  skein uninstall -y
  skein uninstall --purge -y`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := flags.options(false)
			if err != nil {
				return err
			}
			// Every component, whatever the profile, so a profile change
			// between install and uninstall leaves nothing behind.
			o.Values.Egress, o.Values.NoIngress = true, false
			if o.Values.Profile == "empty" {
				o.Values.Profile = ""
			}
			objs, err := install.Objects(o)
			if err != nil {
				return err
			}
			if !yes {
				what := "the Skein control plane"
				if purge {
					what += ", the Istio CRDs (and all Istio configuration) and istio-system"
				}
				ok, err := confirm(cmd.InOrStdin(), cmd.OutOrStdout(), "This will remove "+what+" from the cluster. Proceed? (y/N) ")
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(cmd.OutOrStdout(), "Cancelled.")
					return nil
				}
			}
			dc, _, err := kube.Dynamic(kubeconfig)
			if err != nil {
				return err
			}
			return install.Uninstall(cmd.Context(), dc, objs, purge, cmd.OutOrStdout())
		},
	}
	flags.register(cmd)
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	f.BoolVarP(&yes, "skip-confirmation", "y", false, "do not ask for confirmation")
	f.BoolVar(&purge, "purge", false, "also delete the Istio CRDs and the istio-system namespace")
	return cmd
}

// confirm asks a yes/no question on in; no answer (end of input) is no.
func confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprint(out, question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, err
	}
	if err == io.EOF && line == "" {
		fmt.Fprintln(out)
		return false, fmt.Errorf("no answer on standard input: pass -y to proceed without confirmation")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
