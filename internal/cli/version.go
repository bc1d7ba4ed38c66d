package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "0.1.0-dev"

func newVersionCmd() *cobra.Command {
	var short bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the skein version",
		RunE: func(cmd *cobra.Command, args []string) error {
			if short {
				fmt.Fprintln(cmd.OutOrStdout(), Version)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client version: %s\n", Version)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&short, "short", "s", false, "print only the version number")
	cmd.Flags().Bool("remote", false, "also print the control plane version")
	cmd.Flags().Bool("client", false, "print only the client version")
	return cmd
}
