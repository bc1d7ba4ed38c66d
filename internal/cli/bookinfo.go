package cli

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/samples/bookinfo/app"
)

// newBookinfoCmd runs a Bookinfo service in-process. It is hidden: the
// local runner uses it for containers whose command is ["bookinfo", ...]
// when no bookinfo binary is on PATH.
func newBookinfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "bookinfo <" + strings.Join(app.Services, "|") + "> [--port N]",
		Short:  "Run one service of the Bookinfo sample",
		Hidden: true,
		// The service parses its own flags (--port), exactly as the
		// standalone bookinfo binary does.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
				return cmd.Help()
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := app.Run(ctx, args[0], args[1:])
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		},
	}
}
