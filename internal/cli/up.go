package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/local"
)

func newUpCmd() *cobra.Command {
	var opts local.Options
	cmd := &cobra.Command{
		Use:   "up [-f FILE|DIR ...]",
		Short: "Run a whole mesh on this machine: control plane, gateways, dashboard and every Deployment's pods",
		Long: `Start the control plane, the ingress and egress gateways, the dashboard and, for every Deployment in
the store, its pods as local processes with sidecars, on loopback addresses.
Manifests given with -f are applied first. Runs until interrupted (Ctrl-C),
then stops everything it started.`,
		Example: "  skein up -f samples/bookinfo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.DataDir == "" {
				dir, err := defaultDataDir()
				if err != nil {
					return err
				}
				opts.DataDir = dir
			}
			opts.Namespace = global.namespace
			opts.LogLevel = global.logLevel
			opts.Out = cmd.OutOrStdout()
			opts.Logger = slog.Default()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			returned := make(chan struct{})
			defer close(returned)
			go func() {
				select {
				case <-ctx.Done():
					// A second Ctrl-C kills skein at once; its children
					// die with it (they are started with Pdeathsig).
					stop()
					fmt.Fprintln(cmd.ErrOrStderr(), "Shutting down the local mesh (Ctrl-C again to force)...")
				case <-returned:
				}
			}()
			return local.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&opts.Files, "filename", "f", nil, "manifest file or directory to apply (repeatable; - for stdin)")
	f.StringVar(&opts.DataDir, "data-dir", "", "directory for the store and logs (default $SKEIN_HOME or ~/.skein)")
	f.StringVar(&opts.HTTPAddr, "http-addr", "127.0.0.1:15014", "control plane config API address")
	f.StringVar(&opts.GRPCAddr, "grpc-addr", "127.0.0.1:15012", "control plane xDS and CA address (TLS, Istio's 15012)")
	f.StringVar(&opts.IngressAddress, "ingress-address", "127.0.0.1", "address the ingress gateway listens on")
	f.BoolVar(&opts.NoGateway, "no-gateway", false, "do not run the built-in istio-ingressgateway and istio-egressgateway")
	f.StringVar(&opts.DashboardAddr, "dashboard-addr", "127.0.0.1:20001", "address of the mesh dashboard (empty: no dashboard)")
	return cmd
}

func defaultDataDir() (string, error) {
	if d := os.Getenv("SKEIN_HOME"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --data-dir given and no home directory: %w", err)
	}
	return filepath.Join(home, ".skein"), nil
}
