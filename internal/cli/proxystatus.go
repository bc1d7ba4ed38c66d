package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/xdsserver"
)

func newProxyStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "proxy-status [<pod-name>[.<namespace>]]",
		Aliases: []string{"ps"},
		Short:   "Show each proxy's xDS sync state (CDS/LDS/EDS/RDS) with the control plane",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			statuses, err := newAPIClient(global.server).ProxyStatus(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return printProxyDetail(cmd.OutOrStdout(), statuses, args[0])
			}
			printProxyStatus(cmd.OutOrStdout(), statuses, global.server)
			return nil
		},
	}
	return cmd
}

// printProxyStatus prints istioctl's proxy-status table.
func printProxyStatus(w io.Writer, statuses []xdsserver.ProxyStatus, server string) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCLUSTER\tCDS\tLDS\tEDS\tRDS\tISTIOD\tVERSION")
	for _, s := range statuses {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ClusterID,
			s.Types["CDS"].State(), s.Types["LDS"].State(), s.Types["EDS"].State(), s.Types["RDS"].State(),
			"skein-discovery@"+server, s.Version)
	}
	tw.Flush()
	for _, s := range statuses {
		for _, t := range []string{"CDS", "LDS", "EDS", "RDS"} {
			if ts := s.Types[t]; ts != nil && ts.NackError != "" {
				fmt.Fprintf(w, "\n%s rejected %s version %s: %s\n", s.Name, t, ts.SentVersion, ts.NackError)
			}
		}
	}
}

// printProxyDetail prints per-type versions, nonces and warnings for one proxy.
func printProxyDetail(w io.Writer, statuses []xdsserver.ProxyStatus, name string) error {
	for _, s := range statuses {
		if s.Name != name && !strings.HasPrefix(s.Name, name+".") {
			continue
		}
		fmt.Fprintf(w, "Proxy: %s\nID: %s\nConnected: %s\n", s.Name, s.ID, s.ConnectedAt.Format(time.RFC3339))
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tSTATE\tSENT VERSION\tACKED VERSION\tNACK")
		for _, t := range []string{"CDS", "LDS", "EDS", "RDS"} {
			ts := s.Types[t]
			if ts == nil {
				ts = &xdsserver.TypeStatus{}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t, ts.State(), ts.SentVersion, ts.AckedVersion, ts.NackError)
		}
		tw.Flush()
		for _, warn := range s.Warnings {
			fmt.Fprintf(w, "Warning: %s\n", warn)
		}
		return nil
	}
	return fmt.Errorf("proxy %q is not connected to the control plane", name)
}
