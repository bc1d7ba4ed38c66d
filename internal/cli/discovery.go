package cli

import (
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/discovery"
)

func newDiscoveryCmd() *cobra.Command {
	var opts discovery.Options
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Run the control plane: config store, service registry and xDS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv, err := discovery.New(opts, slog.Default())
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.StoreDir, "store-dir", "", "directory of the durable config store (empty: in memory)")
	f.StringVar(&opts.GRPCAddr, "grpc-addr", "127.0.0.1:15010", "xDS (ADS over gRPC) listen address")
	f.StringVar(&opts.HTTPAddr, "http-addr", "127.0.0.1:15014", "config API and debug listen address")
	f.StringVar(&opts.Domain, "domain", "cluster.local", "cluster DNS domain")
	f.StringVar(&opts.RootNamespace, "root-namespace", "istio-system", "namespace of mesh-wide config")
	f.DurationVar(&opts.Debounce, "debounce", 50*time.Millisecond, "quiet time after a config change before pushing")
	f.DurationVar(&opts.MaxDebounce, "max-debounce", 500*time.Millisecond, "longest a push waits while changes keep coming")
	return cmd
}
