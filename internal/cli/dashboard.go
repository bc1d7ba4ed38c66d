package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/dashboard"
)

func newDashboardCmd() *cobra.Command {
	var (
		addr string
		opts dashboard.Options
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the mesh dashboard: service graph, services, traces, proxies",
		Long: `Serve a web dashboard for the mesh behind --server: a service graph with
requests per second, error rate and p99 latency per edge, per-service Istio
config with validation messages, traces, and each proxy's xDS sync state.
Metrics come from scraping every proxy's :15090/stats/prometheus, or from
Prometheus with --prometheus-url. ` + "`skein up`" + ` starts one too.`,
		Example: "  skein dashboard --addr 127.0.0.1:20001",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Server = global.server
			opts.CredentialFile = global.credentialFile
			opts.Logger = slog.Default()
			l, err := dashboard.Listen(listenAddr(addr))
			if err != nil {
				return fmt.Errorf("dashboard address: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Dashboard: http://%s/\n", l.Addr())
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return dashboard.New(opts).Serve(ctx, l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:20001", "address to serve the dashboard on (\":20001\": all interfaces, or the app IP in a pod a skein runner starts)")
	f.StringVar(&opts.PrometheusURL, "prometheus-url", "", "query this Prometheus (e.g. http://localhost:9090) instead of scraping the proxies")
	f.DurationVar(&opts.Window, "window", 30*time.Second, "span that rates, error % and p99 are computed over")
	f.DurationVar(&opts.ScrapeInterval, "scrape-interval", 2*time.Second, "how often to scrape the proxies")
	return cmd
}

// listenAddr gives an address without a host the app IP of the pod the
// process runs in when a skein runner started it (SKEIN_APP_IP: pods share
// the host's network, each on its own loopback IP); elsewhere it means all
// interfaces, as in a Kubernetes pod.
func listenAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	if ip := os.Getenv("SKEIN_APP_IP"); ip != "" {
		return net.JoinHostPort(ip, port)
	}
	return addr
}
