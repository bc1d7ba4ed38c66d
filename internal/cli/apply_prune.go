package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
)

// FieldManagerAnnotation records which field manager last applied an
// object with --server-side. Ownership is per object, not per field: a
// second manager conflicts on the whole object unless it forces.
const FieldManagerAnnotation = "skein.io/field-manager"

func parseSelector(s string) (labels.Selector, error) {
	if s == "" {
		return nil, nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid label selector %q: %w", s, err)
	}
	return sel, nil
}

func filterObjects(objs []*config.Object, sel labels.Selector) []*config.Object {
	var out []*config.Object
	for _, o := range objs {
		if sel.Matches(labels.Set(o.Meta.Labels)) {
			out = append(out, o)
		}
	}
	return out
}

// claimOwnership makes manager the owner of objs, refusing objects another
// manager owns unless force (kubectl's --force-conflicts).
func claimOwnership(cmd *cobra.Command, client *apiclient.Client, objs []*config.Object, manager string, force bool) error {
	var conflicts []string
	for _, obj := range objs {
		live, err := client.Get(cmd.Context(), obj.Key())
		if err != nil && !apiclient.IsNotFound(err) {
			return serverError(err)
		}
		if err == nil {
			if owner := live.Meta.Annotations[FieldManagerAnnotation]; owner != "" && owner != manager && !force {
				schema, _ := config.SchemaForGVK(obj.GVK.APIVersion(), obj.GVK.Kind)
				conflicts = append(conflicts, fmt.Sprintf("%s/%s: conflict with %q using %s: .spec", schema.Resource(), obj.Meta.Name, owner, obj.GVK.APIVersion()))
			}
		}
		if obj.Meta.Annotations == nil {
			obj.Meta.Annotations = map[string]string{}
		}
		obj.Meta.Annotations[FieldManagerAnnotation] = manager
		obj.SyncMeta()
	}
	if len(conflicts) > 0 {
		// kubectl's words, capitals and all.
		msg := fmt.Sprintf("Apply failed with %d conflict(s):\n%s\nPlease review the fields above--they currently have other managers. "+
			"Rerun with --force-conflicts to take them over, or use another --field-manager.", len(conflicts), strings.Join(conflicts, "\n"))
		return errors.New(msg)
	}
	return nil
}

// prune deletes, as kubectl apply --prune -l does, the objects matching
// sel in the namespaces applied to that are not among the applied objects.
// Namespaces themselves are never pruned.
func prune(cmd *cobra.Command, client *apiclient.Client, applied []*config.Object, sel labels.Selector, dryRun string) error {
	keep := map[config.Key]bool{}
	namespaces := map[string]bool{}
	for _, o := range applied {
		keep[o.Key()] = true
		if o.Meta.Namespace != "" {
			namespaces[o.Meta.Namespace] = true
		}
	}
	if global.namespace != "" {
		namespaces[global.namespace] = true
	}
	if len(namespaces) == 0 {
		namespaces["default"] = true
	}
	var doomed []*config.Object
	for _, s := range config.Schemas {
		if s.Kind == "Namespace" {
			continue
		}
		scopes := []string{""}
		if s.Namespaced {
			scopes = slices.Sorted(func(yield func(string) bool) {
				for ns := range namespaces {
					if !yield(ns) {
						return
					}
				}
			})
		}
		for _, ns := range scopes {
			live, _, err := client.List(cmd.Context(), s.KeyKind(), ns)
			if err != nil {
				return serverError(err)
			}
			for _, o := range live {
				if !keep[o.Key()] && sel.Matches(labels.Set(o.Meta.Labels)) {
					doomed = append(doomed, o)
				}
			}
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	suffix := ""
	if dryRun == "none" {
		keys := make([]config.Key, len(doomed))
		for i, o := range doomed {
			keys[i] = o.Key()
		}
		if _, err := client.Delete(cmd.Context(), keys); err != nil {
			return serverError(err)
		}
	} else {
		suffix = " (dry run)"
		if dryRun == "server" {
			suffix = " (server dry run)"
		}
	}
	for _, o := range doomed {
		schema, _ := config.SchemaForGVK(o.GVK.APIVersion(), o.GVK.Kind)
		fmt.Fprintf(cmd.OutOrStdout(), "%s/%s pruned%s\n", schema.Resource(), o.Meta.Name, suffix)
	}
	return nil
}
