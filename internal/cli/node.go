package cli

import (
	"fmt"
	"log/slog"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/kube"
	"github.com/skein-mesh/skein/internal/node"
)

func newNodeCmd() *cobra.Command {
	var (
		opts       node.Options
		kubeconfig string
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Join a Kubernetes cluster as a node that runs its pods as local processes",
		Long: `Register this machine as a Node of the cluster and run the pods scheduled to
it as processes on loopback pod IPs (127.3.0.0/16), the way skein up runs
Bookinfo: no container runtime, images map to skein's built-in programs
(skein, the Bookinfo services) or a pod's command runs a program on the
host. Service-account tokens, ConfigMaps, Secrets and the downward API are
mounted as files; status, readiness and deletion follow the kubelet's
rules. Stop it with SIGINT or SIGTERM: its pods stop and the node goes
NotReady.`,
		Example: `  skein node --kubeconfig ~/.kube/config
  skein node --name laptop --data-dir /var/lib/skein-node`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			dc, _, err := kube.Dynamic(kubeconfig)
			if err != nil {
				return err
			}
			if opts.DataDir == "" {
				home, err := defaultDataDir()
				if err != nil {
					return err
				}
				opts.DataDir = filepath.Join(home, "node")
			}
			opts.Client, opts.Version, opts.Logger = dc, "skein-"+Version, slog.Default()
			agent, err := node.New(opts)
			if err != nil {
				return err
			}
			if err := agent.Run(ctx); err != nil {
				return fmt.Errorf("node %s: %w", opts.NodeName, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&opts.NodeName, "name", node.DefaultName(), "the Node's name")
	f.StringVar(&opts.DataDir, "data-dir", "", "pod directories and logs (default $SKEIN_HOME/node)")
	f.IntVar(&opts.MaxPods, "max-pods", 110, "pod capacity reported to the scheduler")
	f.StringVar(&opts.KubeletAddr, "kubelet-addr", "127.0.0.1:10250", "where the kubelet API (kubectl logs, kubectl port-forward) listens, on the node's loopback address; empty: not served")
	return cmd
}
