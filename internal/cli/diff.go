package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
)

func newDiffCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILENAME",
		Short: "Show what applying the files would change, as kubectl diff does",
		Long: `Diff the live objects against what "skein apply -f" would make of the files,
as a unified diff per object ("LIVE" and "MERGED"), like kubectl diff.

Exit status: 0 when there are no differences, 1 when there are, and 2 when
the files are invalid or the control plane cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, warns, errs := config.LoadFilesEach(cmd.InOrStdin(), files, global.namespace)
			printWarnings(cmd.ErrOrStderr(), warns)
			if len(errs) > 0 {
				reportErrors(cmd.ErrOrStderr(), errs, nil)
				return &exitError{code: 2}
			}
			changed, err := diffObjects(cmd, newAPIClient(global.server), objs)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "error: "+serverError(err).Error())
				return &exitError{code: 2}
			}
			if changed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) to diff; repeatable")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// diffObjects prints a unified diff for every object whose live form
// differs from the applied form, and reports whether any did.
func diffObjects(cmd *cobra.Command, client *apiclient.Client, objs []*config.Object) (bool, error) {
	changed := false
	for _, obj := range objs {
		var liveText string
		merged := obj
		live, err := client.Get(cmd.Context(), obj.Key())
		switch {
		case apiclient.IsNotFound(err):
		case err != nil:
			return false, err
		default:
			merged = withServerFields(obj, live)
			if liveText, err = diffYAML(live); err != nil {
				return false, err
			}
		}
		mergedText, err := diffYAML(merged)
		if err != nil {
			return false, err
		}
		if liveText == mergedText {
			continue
		}
		changed = true
		if err := writeUnified(cmd.OutOrStdout(), diffName(obj), liveText, mergedText); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// diffName is kubectl diff's file name: group.version.Kind.namespace.name.
func diffName(o *config.Object) string {
	parts := []string{}
	if o.GVK.Group != "" {
		parts = append(parts, o.GVK.Group)
	}
	parts = append(parts, o.GVK.Version, o.GVK.Kind)
	if o.Meta.Namespace != "" {
		parts = append(parts, o.Meta.Namespace)
	}
	return strings.Join(append(parts, o.Meta.Name), ".")
}

// diffYAML renders an object as the YAML a diff compares; the store's
// revision number is left out, as it changes with every write.
func diffYAML(o *config.Object) (string, error) {
	c := o.DeepCopy()
	c.Meta.ResourceVersion = ""
	c.SyncMeta()
	doc, err := config.Encode(c)
	if err != nil {
		return "", err
	}
	b, err := yaml.Marshal(doc)
	return string(b), err
}

func writeUnified(w io.Writer, name, live, merged string) error {
	from, to := "/tmp/LIVE/"+name, "/tmp/MERGED/"+name
	fmt.Fprintf(w, "diff -u -N %s %s\n", from, to)
	return difflib.WriteUnifiedDiff(w, difflib.UnifiedDiff{
		A: difflib.SplitLines(live), B: difflib.SplitLines(merged),
		FromFile: from, ToFile: to, Context: 3,
	})
}
