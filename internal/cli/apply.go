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

// applyOptions are kubectl apply's flags that Skein honours.
type applyOptions struct {
	files          []string
	dryRun         string // none | client | server
	serverSide     bool
	fieldManager   string
	forceConflicts bool
	prune          bool
	selector       string
}

func newApplyCmd() *cobra.Command {
	var o applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Apply configuration (Istio and Kubernetes YAML) to the control plane",
		Long: `Apply configuration from files, directories (their *.yaml, *.yml and *.json
files) or stdin ("-"), like kubectl apply. Every object is validated; the
valid ones are applied, each invalid one is reported with its file, document,
resource and field, and the exit status is then 1.`,
		Example: `  skein apply -f samples/bookinfo/networking/bookinfo-gateway.yaml
  skein apply -f networking/ -n bookinfo
  skein apply -f networking/ --dry-run=server
  skein apply -f networking/ --prune -l app=reviews
  cat vs.yaml | skein apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runApply(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "file, directory or - (stdin) to apply; repeatable")
	f.StringVar(&o.dryRun, "dry-run", "none", `"none", "server" (the control plane validates and reports, stores nothing) or "client" (only print what would be sent)`)
	f.Lookup("dry-run").NoOptDefVal = "unchanged"
	f.BoolVar(&o.serverSide, "server-side", false, "apply on the control plane, recording --field-manager as the owner of each object")
	f.StringVar(&o.fieldManager, "field-manager", "", `name of the manager applying (default "kubectl" with --server-side, "kubectl-client-side-apply" without)`)
	f.BoolVar(&o.forceConflicts, "force-conflicts", false, "with --server-side, take over objects owned by another field manager")
	f.BoolVar(&o.prune, "prune", false, "delete objects matching -l that are not in the applied files (kubectl's --prune)")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector: only apply (and prune) objects matching it, e.g. app=reviews")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func runApply(cmd *cobra.Command, o *applyOptions) error {
	stderr := cmd.ErrOrStderr()
	switch o.dryRun {
	case "unchanged":
		fmt.Fprintln(stderr, "W: --dry-run is deprecated and can be replaced with --dry-run=client.")
		o.dryRun = "client"
	case "none", "client", "server":
	default:
		return fmt.Errorf(`invalid dry-run value (%s). Must be "none", "server", or "client"`, o.dryRun)
	}
	if o.forceConflicts && !o.serverSide {
		return errors.New("--force-conflicts only works with --server-side")
	}
	if o.prune && o.selector == "" {
		return errors.New("all resources selected for prune without explicitly passing --all. To prune all resources, pass the --all flag. If you did not mean to prune all resources, specify a label selector")
	}
	sel, err := parseSelector(o.selector)
	if err != nil {
		return err
	}
	manager := o.fieldManager
	if manager == "" {
		manager = "kubectl-client-side-apply"
		if o.serverSide {
			manager = "kubectl"
		}
	}

	objs, warns, loadErrs := config.LoadFilesEach(cmd.InOrStdin(), o.files, global.namespace)
	printWarnings(stderr, warns)
	if sel != nil {
		objs = filterObjects(objs, sel)
	}
	if len(objs) == 0 && len(loadErrs) == 0 {
		return errors.New("no objects passed to apply")
	}
	client := newAPIClient(global.server)
	var applyErr error
	if len(objs) > 0 {
		applyErr = applyObjects(cmd, client, objs, o, manager)
	}
	if applyErr == nil && o.prune {
		applyErr = prune(cmd, client, objs, sel, o.dryRun)
	}
	if len(loadErrs) == 0 {
		return applyErr // printed once, by Execute
	}
	return reportErrors(stderr, loadErrs, applyErr)
}

// applyObjects sends the valid objects and prints kubectl's result lines.
func applyObjects(cmd *cobra.Command, client *apiclient.Client, objs []*config.Object, o *applyOptions, manager string) error {
	if o.serverSide {
		if err := claimOwnership(cmd, client, objs, manager, o.forceConflicts); err != nil {
			return err
		}
	}
	var (
		results []config.ApplyResult
		err     error
		suffix  string
	)
	switch o.dryRun {
	case "client":
		results, err = clientDryRun(cmd, client, objs)
		suffix = " (dry run)"
	case "server":
		results, err = client.DryRun(cmd.Context(), objs)
		suffix = " (server dry run)"
	default:
		results, err = client.Apply(cmd.Context(), objs)
	}
	if err != nil {
		return serverError(err)
	}
	for _, r := range results {
		if o.serverSide {
			r.Action = "serverside-applied"
		}
		fmt.Fprintln(cmd.OutOrStdout(), r.String()+suffix)
	}
	return nil
}

// clientDryRun decides created/configured/unchanged against the live
// objects without sending anything to be stored.
func clientDryRun(cmd *cobra.Command, client *apiclient.Client, objs []*config.Object) ([]config.ApplyResult, error) {
	results := make([]config.ApplyResult, 0, len(objs))
	for _, obj := range objs {
		schema, _ := config.SchemaForGVK(obj.GVK.APIVersion(), obj.GVK.Kind)
		res := config.ApplyResult{Resource: schema.Resource(), Namespace: obj.Meta.Namespace, Name: obj.Meta.Name, Action: "created"}
		live, err := client.Get(cmd.Context(), obj.Key())
		switch {
		case apiclient.IsNotFound(err):
		case err != nil:
			return nil, err
		case config.ContentEqual(live, withServerFields(obj, live)):
			res.Action = "unchanged"
		default:
			res.Action = "configured"
		}
		results = append(results, res)
	}
	return results, nil
}

// withServerFields is obj with the fields the store assigns copied from
// live, so only what the user wrote is compared.
func withServerFields(obj, live *config.Object) *config.Object {
	c := obj.DeepCopy()
	c.Meta.ResourceVersion = live.Meta.ResourceVersion
	c.Meta.Generation = live.Meta.Generation
	c.Meta.CreationTimestamp = live.Meta.CreationTimestamp
	if c.Status == nil {
		c.Status = live.Status
	}
	c.SyncMeta()
	return c
}

// reportErrors prints every problem as kubectl does and turns them into
// exit status 1.
func reportErrors(w io.Writer, errs []error, applyErr error) error {
	if applyErr != nil {
		errs = append(errs, applyErr)
	}
	if len(errs) == 0 {
		return nil
	}
	for _, err := range errs {
		msg := err.Error()
		if !strings.HasPrefix(msg, "Error from server") {
			msg = "error: " + msg
		}
		fmt.Fprintln(w, msg)
	}
	return &exitError{code: 1}
}

// loadForCommand loads and validates files, printing warnings to stderr.
func loadForCommand(cmd *cobra.Command, files []string) ([]*config.Object, error) {
	objs, warns, err := config.LoadFilesFrom(cmd.InOrStdin(), files, global.namespace)
	printWarnings(cmd.ErrOrStderr(), warns)
	return objs, err
}

// printWarnings prints warnings as kubectl prints an admission webhook's.
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
