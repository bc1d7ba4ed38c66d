package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
)

func newDeleteCmd() *cobra.Command {
	var (
		files          []string
		ignoreNotFound bool
	)
	cmd := &cobra.Command{
		Use:   "delete (-f FILENAME | KIND NAME... | KIND/NAME...)",
		Short: "Delete configuration objects, like kubectl delete",
		Example: `  skein delete -f samples/bookinfo/networking/virtual-service-reviews-v3.yaml
  skein delete virtualservice reviews -n bookinfo
  skein delete dr/reviews vs/reviews`,
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := deleteKeys(cmd, files, args)
			if err != nil {
				return err
			}
			client := newAPIClient(global.server)
			if ignoreNotFound {
				if keys, err = existingKeys(cmd, client, keys); err != nil {
					return err
				}
				if len(keys) == 0 {
					return nil
				}
			}
			results, err := client.Delete(cmd.Context(), keys)
			if err != nil {
				return serverError(err)
			}
			for _, r := range results {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %q %s\n", r.Resource, r.Name, r.Action)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) naming the objects to delete; repeatable")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat objects that do not exist as deleted")
	return cmd
}

// deleteKeys turns -f files or KIND NAME... arguments into keys.
func deleteKeys(cmd *cobra.Command, files, args []string) ([]config.Key, error) {
	if len(files) > 0 {
		if len(args) > 0 {
			return nil, errors.New("give either -f or KIND NAME..., not both")
		}
		objs, err := loadForCommand(cmd, files)
		if err != nil {
			return nil, err
		}
		keys := make([]config.Key, 0, len(objs))
		seen := map[config.Key]bool{}
		for _, o := range objs {
			if k := o.Key(); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, errors.New("no objects passed to delete")
		}
		return keys, nil
	}
	if len(args) == 0 {
		return nil, errors.New("you must provide one or more resources by argument or filename")
	}
	reqs, err := parseResourceArgs(args)
	if err != nil {
		return nil, err
	}
	var keys []config.Key
	for _, req := range reqs {
		if len(req.names) == 0 {
			return nil, fmt.Errorf("resource(s) were provided, but no name was specified: skein delete %s NAME", args[0])
		}
		for _, n := range req.names {
			keys = append(keys, config.Key{Kind: req.schema.KeyKind(), Namespace: namespaceFor(req.schema), Name: n})
		}
	}
	return keys, nil
}

// existingKeys drops the keys of objects that do not exist.
func existingKeys(cmd *cobra.Command, client *apiclient.Client, keys []config.Key) ([]config.Key, error) {
	var out []config.Key
	for _, k := range keys {
		_, err := client.Get(cmd.Context(), k)
		switch {
		case apiclient.IsNotFound(err):
		case err != nil:
			return nil, serverError(err)
		default:
			out = append(out, k)
		}
	}
	return out, nil
}
