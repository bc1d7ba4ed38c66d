package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/analyze"
	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/kube"
)

// istioctl's exit codes for analyze (istioctl/cmd/root exit codes).
const (
	exitDataError           = 65 // a file could not be parsed
	exitAnalyzerFoundIssues = 79 // a message reached --failure-threshold
)

type analyzeOptions struct {
	allNamespaces    bool
	useKube          bool
	kubeconfig       string
	output           string
	failureThreshold string
	outputThreshold  string
	recursive        bool
	listAnalyzers    bool
	ignoreUnknown    bool
	istioNamespace   string
	suppress         []string
	timeout          time.Duration
}

func newAnalyzeCmd() *cobra.Command {
	var o analyzeOptions
	cmd := &cobra.Command{
		Use:   "analyze [FILE|DIR|-]...",
		Short: "Analyze Istio configuration and report problems, as istioctl analyze",
		Long: `Analyze Istio configuration with Istio's analyzers and message codes.

Without files it analyzes the running control plane's config and registry
(--server), or a Kubernetes cluster with --kubeconfig. Files are merged over
that live config; --use-kube=false analyzes the files alone.`,
		Example: `  skein analyze
  skein analyze -n bookinfo
  skein analyze --all-namespaces
  skein analyze --use-kube=false samples/bookinfo/bookinfo.yaml samples/bookinfo/networking/
  skein analyze a.yaml -o json --failure-threshold Warning`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAnalyze(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Analyze all namespaces")
	f.BoolVarP(&o.useKube, "use-kube", "k", true, "Use the live control plane (or the cluster of --kubeconfig) for analysis. Set --use-kube=false to analyze files only.")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "analyze the cluster of this kubeconfig instead of the control plane at --server")
	f.StringVarP(&o.output, "output", "o", "log", "Output format: one of [log json yaml]")
	f.StringVar(&o.failureThreshold, "failure-threshold", "Error", "The severity level of analysis at which to set a non-zero exit code. Valid values: [Info Warning Error]")
	f.StringVar(&o.outputThreshold, "output-threshold", "Info", "The severity level of analysis at which to display messages. Valid values: [Info Warning Error]")
	f.BoolVarP(&o.recursive, "recursive", "R", false, "Process directory arguments recursively.")
	f.BoolVarP(&o.listAnalyzers, "list-analyzers", "L", false, "List the analyzers available to run. Suppresses normal execution.")
	f.BoolVar(&o.ignoreUnknown, "ignore-unknown", false, "Don't complain about un-parseable input documents")
	f.StringVarP(&o.istioNamespace, "istioNamespace", "i", "istio-system", "Istio system namespace (the mesh's root namespace)")
	f.StringArrayVarP(&o.suppress, "suppress", "S", nil, `Suppress reporting a message code on a specific resource: <code>=<resource>, e.g. --suppress "IST0102=Namespace default" or "IST0101=DestinationRule *.default" (repeatable)`)
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "The duration to wait before failing")
	return cmd
}

func runAnalyze(cmd *cobra.Command, o analyzeOptions, args []string) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if o.listAnalyzers {
		for _, a := range analyze.All() {
			fmt.Fprintf(out, "* %s:\n    %s\n", a.Name, a.Description)
		}
		return nil
	}
	format := strings.ToLower(o.output)
	if format != "log" && format != "json" && format != "yaml" {
		return fmt.Errorf("%s not a valid option for format. See skein analyze --help", o.output)
	}
	failAt, err := analyze.ParseLevel(o.failureThreshold)
	if err != nil {
		return err
	}
	showAt, err := analyze.ParseLevel(o.outputThreshold)
	if err != nil {
		return err
	}
	namespace := global.namespace
	if namespace == "" {
		namespace = "default"
	}
	files, err := analyze.ExpandPaths(args, o.recursive, func(p string) {
		fmt.Fprintf(errOut, "Skipping file %v, recognized file extensions are: [.json .yaml .yml]\n", p)
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	in := analyze.NewInput()
	if o.useKube {
		if err := addLive(ctx, in, o); err != nil {
			return err
		}
	}
	if !o.useKube {
		in.AddDefaults(o.istioNamespace)
	}
	var parseErrs []error
	for _, f := range files {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return err
		}
		parseErrs = append(parseErrs, in.AddFile(f, data, namespace)...)
	}
	if len(parseErrs) > 0 {
		fmt.Fprintf(errOut, "Error(s) adding files: %v\n", errors.Join(parseErrs...))
	}

	opts := analyze.Options{Namespace: namespace, RootNamespace: o.istioNamespace}
	for _, s := range o.suppress {
		sup, err := analyze.ParseSuppression(s)
		if err != nil {
			return err
		}
		if !analyze.KnownCode(sup.Code) {
			fmt.Fprintf(errOut, "Warning: Supplied message code '%s' is an unknown message code and will not have any effect.\n", sup.Code)
		}
		opts.Suppress = append(opts.Suppress, sup)
	}
	target := "namespace: " + namespace
	if o.allNamespaces {
		opts.Namespace, target = "", "all namespaces"
	}
	msgs := analyze.Run(in, opts)
	shown := analyze.Filter(msgs, showAt)
	if err := printMessages(out, format, shown); err != nil {
		return err
	}
	if len(shown) == 0 {
		switch {
		case len(parseErrs) > 0:
			fmt.Fprintf(errOut, "No validation issues found when analyzing %s (but %d %s could not be parsed).\n", target, len(parseErrs), plural(len(parseErrs), "file", "files"))
		case len(files) > 0:
			fmt.Fprintf(errOut, "\u2714 No validation issues found when analyzing %s.\n", strings.Join(files, "\n"))
		default:
			fmt.Fprintf(errOut, "\u2714 No validation issues found when analyzing %s.\n", target)
		}
	}
	// As istioctl: the exit code follows every message, not only the
	// shown ones, and only in log format.
	if format != "log" {
		return nil
	}
	if worst, any := analyze.Worst(msgs); any && worst >= failAt {
		return &exitError{code: exitAnalyzerFoundIssues, msg: "Analyzers found issues.\nSee https://istio.io/latest/docs/reference/config/analysis for more information about causes and resolutions."}
	}
	if len(parseErrs) > 0 && !o.ignoreUnknown {
		return &exitError{code: exitDataError, msg: "some files could not be parsed"}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func printMessages(w io.Writer, format string, msgs []analyze.Message) error {
	switch format {
	case "log":
		lines := make([]string, len(msgs))
		for i, m := range msgs {
			lines[i] = m.String()
		}
		_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
		return err
	default:
		docs := make([]map[string]any, len(msgs))
		for i, m := range msgs {
			docs[i] = m.Unstructured()
		}
		b, err := json.MarshalIndent(docs, "", "\t")
		if err != nil {
			return err
		}
		if format == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(w, strings.TrimRight(string(b), "\n"))
		return err
	}
}

// addLive reads every kind Skein knows from the cluster of --kubeconfig,
// or else from the control plane's config API.
func addLive(ctx context.Context, in *analyze.Input, o analyzeOptions) error {
	if o.kubeconfig != "" {
		dc, _, err := kube.Dynamic(o.kubeconfig)
		if err != nil {
			return err
		}
		return addCluster(ctx, in, dc)
	}
	c := newAPIClient(global.server)
	for _, s := range config.Schemas {
		objs, _, err := c.List(ctx, s.Kind, "")
		if apiclient.IsNotFound(err) {
			continue // a control plane without this kind
		}
		if err != nil {
			var ue *apiclient.UnreachableError
			if errors.As(err, &ue) {
				return fmt.Errorf("%w (analyze files alone with --use-kube=false)", err)
			}
			return err
		}
		for _, obj := range objs {
			in.AddObject(obj)
		}
	}
	return nil
}

// addCluster lists each kind at the first version the cluster serves;
// kinds whose CRD is not installed are skipped.
func addCluster(ctx context.Context, in *analyze.Input, dc dynamic.Interface) error {
	for _, s := range config.Schemas {
		for _, v := range s.Versions {
			gvr := schema.GroupVersionResource{Group: s.Group, Version: v, Resource: s.Plural}
			list, err := dc.Resource(gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("list %s: %w", s.Plural, err)
			}
			for _, u := range list.Items {
				u.SetManagedFields(nil)
				delete(u.Object, "status")
				obj, err := config.Decode(u.Object)
				if err != nil {
					return fmt.Errorf("%s %s/%s: %w", s.Kind, u.GetNamespace(), u.GetName(), err)
				}
				in.AddObject(obj)
			}
			break
		}
	}
	return nil
}
