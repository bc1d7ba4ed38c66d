package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
)

func newApplyCmd() *cobra.Command {
	var (
		files  []string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Apply configuration (Istio and Kubernetes YAML) to the control plane",
		Long: `Apply configuration from files, directories (their *.yaml, *.yml and *.json
files) or stdin ("-"), like kubectl apply. Every object is validated first;
if any is invalid, nothing is applied.`,
		Example: `  skein apply -f samples/bookinfo/networking/bookinfo-gateway.yaml
  skein apply -f networking/ -n bookinfo
  cat vs.yaml | skein apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := loadForCommand(cmd, files)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				return errors.New("no objects passed to apply")
			}
			client := newAPIClient(global.server)
			apply, suffix := client.Apply, ""
			if dryRun {
				apply, suffix = client.DryRun, " (dry run)"
			}
			results, err := apply(cmd.Context(), objs)
			if err != nil {
				return serverError(err)
			}
			for _, r := range results {
				fmt.Fprintln(cmd.OutOrStdout(), r.String()+suffix)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) to apply; repeatable")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would be applied")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// loadForCommand loads and validates files, printing warnings to stderr.
func loadForCommand(cmd *cobra.Command, files []string) ([]*config.Object, error) {
	objs, warns, err := config.LoadFilesFrom(cmd.InOrStdin(), files, global.namespace)
	printWarnings(cmd.ErrOrStderr(), warns)
	return objs, err
}

func printWarnings(w io.Writer, warns []config.Warning) {
	for _, warn := range warns {
		fmt.Fprintln(w, "Warning: "+warn.String())
	}
}

// namespaceFor is the namespace a command works in for a kind: -n, or
// "default"; "" for cluster-scoped kinds.
func namespaceFor(s *config.Schema) string {
	switch {
	case !s.Namespaced:
		return ""
	case global.namespace != "":
		return global.namespace
	default:
		return "default"
	}
}

// lookupKind resolves what a user typed ("vs", "virtualservices", ...).
func lookupKind(name string) (*config.Schema, error) {
	s, ok := config.SchemaForKind(name)
	if !ok {
		return nil, fmt.Errorf("the server doesn't have a resource type %q", name)
	}
	return s, nil
}

// serverError renders control plane errors the way kubectl does.
func serverError(err error) error {
	var se *apiclient.StatusError
	if !errors.As(err, &se) || se.Reason == "" {
		return err
	}
	lines := strings.Split(se.Message, "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("Error from server (%s): %s", se.Reason, l)
	}
	return errors.New(strings.Join(lines, "\n"))
}
