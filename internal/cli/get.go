package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
)

// clock is the time AGE columns are measured to; tests pin it.
var clock = time.Now

type getOptions struct {
	output        string
	allNamespaces bool
	showLabels    bool
}

func newGetCmd() *cobra.Command {
	var opts getOptions
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME...] | KIND/NAME...",
		Short: "List configuration objects, like kubectl get",
		Example: `  skein get virtualservices
  skein get vs reviews -o yaml
  skein get dr,vs -A
  skein get pods --show-labels -o wide`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch opts.output {
			case "", "wide", "yaml", "json", "name":
			default:
				return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json, name, wide, yaml", opts.output)
			}
			reqs, err := parseResourceArgs(args)
			if err != nil {
				return err
			}
			return runGet(cmd, opts, reqs)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.output, "output", "o", "", "output format: wide, yaml, json or name")
	f.BoolVarP(&opts.allNamespaces, "all-namespaces", "A", false, "list objects in all namespaces")
	f.BoolVar(&opts.showLabels, "show-labels", false, "show all labels as the last column")
	return cmd
}

// resourceRequest is one kind and the names asked for (none: all).
type resourceRequest struct {
	schema *config.Schema
	names  []string
}

// parseResourceArgs accepts "KIND[,KIND] [NAME...]" or "KIND/NAME...".
func parseResourceArgs(args []string) ([]resourceRequest, error) {
	if strings.Contains(args[0], "/") {
		var reqs []resourceRequest
		index := map[*config.Schema]int{}
		for _, a := range args {
			kind, name, ok := strings.Cut(a, "/")
			if !ok || kind == "" || name == "" {
				return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skein get resource/<resource_name>' instead of 'skein get resource resource/<resource_name>')")
			}
			s, err := lookupKind(kind)
			if err != nil {
				return nil, err
			}
			if i, seen := index[s]; seen {
				reqs[i].names = append(reqs[i].names, name)
				continue
			}
			index[s] = len(reqs)
			reqs = append(reqs, resourceRequest{schema: s, names: []string{name}})
		}
		return reqs, nil
	}
	kinds := strings.Split(args[0], ",")
	if len(kinds) > 1 && len(args) > 1 {
		return nil, errors.New("names cannot be given with more than one kind: use KIND/NAME arguments")
	}
	var reqs []resourceRequest
	for _, k := range kinds {
		s, err := lookupKind(k)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, resourceRequest{schema: s, names: args[1:]})
	}
	return reqs, nil
}

// listed is the objects found for one request.
type listed struct {
	schema *config.Schema
	objs   []*config.Object
}

func runGet(cmd *cobra.Command, opts getOptions, reqs []resourceRequest) error {
	client := newAPIClient(global.server)
	var (
		groups   []listed
		notFound []string
		named    = 0
	)
	for _, req := range reqs {
		ns := namespaceFor(req.schema)
		if opts.allNamespaces {
			ns = ""
		}
		objs, _, err := client.List(cmd.Context(), req.schema.KeyKind(), ns)
		if err != nil {
			return serverError(err)
		}
		if len(req.names) > 0 {
			named += len(req.names)
			byName := map[string]*config.Object{}
			for _, o := range objs {
				byName[o.Meta.Name] = o
			}
			objs = objs[:0:0]
			for _, n := range req.names {
				if o, ok := byName[n]; ok {
					objs = append(objs, o)
					continue
				}
				notFound = append(notFound, fmt.Sprintf("Error from server (NotFound): %s.%s %q not found",
					req.schema.Plural, req.schema.Group, n))
			}
		}
		groups = append(groups, listed{schema: req.schema, objs: objs})
	}

	out := cmd.OutOrStdout()
	var err error
	switch opts.output {
	case "yaml", "json":
		err = printDocuments(out, opts.output, groups, named == 1 && len(notFound) == 0)
	case "name":
		for _, g := range groups {
			for _, o := range g.objs {
				fmt.Fprintf(out, "%s/%s\n", g.schema.Resource(), o.Meta.Name)
			}
		}
	default:
		printTables(out, opts, groups, clock())
	}
	if err != nil {
		return err
	}
	total := 0
	for _, g := range groups {
		total += len(g.objs)
	}
	if total == 0 && len(notFound) == 0 && opts.output != "yaml" && opts.output != "json" {
		fmt.Fprintln(cmd.ErrOrStderr(), noResourcesMessage(reqs, opts.allNamespaces))
	}
	if len(notFound) > 0 {
		return errors.New(strings.Join(notFound, "\n"))
	}
	return nil
}

func noResourcesMessage(reqs []resourceRequest, all bool) string {
	if all || !reqs[0].schema.Namespaced {
		return "No resources found"
	}
	return fmt.Sprintf("No resources found in %s namespace.", namespaceFor(reqs[0].schema))
}

// printDocuments prints one object, or a kind: List of all of them.
func printDocuments(w io.Writer, format string, groups []listed, single bool) error {
	var items []any
	for _, g := range groups {
		for _, o := range g.objs {
			doc, err := config.Encode(o)
			if err != nil {
				return err
			}
			items = append(items, doc)
		}
	}
	var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": orEmpty(items), "metadata": map[string]any{"resourceVersion": ""}}
	if single && len(items) == 1 {
		v = items[0]
	}
	var (
		b   []byte
		err error
	)
	if format == "json" {
		b, err = json.MarshalIndent(v, "", "    ")
		b = append(b, '\n')
	} else {
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func orEmpty(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}

// column is one table column.
type column struct {
	header string
	value  func(o *config.Object) string
}

func printTables(w io.Writer, opts getOptions, groups []listed, now time.Time) {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0) // kubectl's table settings
	defer tw.Flush()
	printed := 0
	for _, g := range groups {
		if len(g.objs) == 0 {
			continue
		}
		if printed > 0 {
			fmt.Fprintln(tw)
		}
		printed++
		cols := tableColumns(g.schema, now)
		if opts.output == "wide" {
			cols = append(cols, wideColumns(g.schema)...)
		}
		if opts.showLabels {
			cols = append(cols, column{header: "LABELS", value: func(o *config.Object) string { return formatLabels(o.Meta.Labels) }})
		}
		if opts.allNamespaces && g.schema.Namespaced {
			cols = append([]column{{header: "NAMESPACE", value: func(o *config.Object) string { return o.Meta.Namespace }}}, cols...)
		}
		prefix := ""
		if len(groups) > 1 {
			prefix = g.schema.Resource() + "/"
		}
		headers := make([]string, len(cols))
		for i, c := range cols {
			headers[i] = c.header
		}
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
		for _, o := range g.objs {
			cells := make([]string, len(cols))
			for i, c := range cols {
				cells[i] = c.value(o)
				if c.header == "NAME" {
					cells[i] = prefix + cells[i]
				}
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
}

// tableColumns are the default columns of a kind: kubectl's for
// Kubernetes kinds, the printer columns of Istio's CRDs for Istio kinds.
func tableColumns(s *config.Schema, now time.Time) []column {
	name := column{header: "NAME", value: func(o *config.Object) string { return o.Meta.Name }}
	age := column{header: "AGE", value: func(o *config.Object) string { return formatAge(o.Meta.CreationTimestamp, now) }}
	cols := []column{name}
	add := func(header string, value func(o *config.Object) string) {
		cols = append(cols, column{header: header, value: value})
	}
	switch s.Kind {
	case "VirtualService":
		add("GATEWAYS", func(o *config.Object) string { return jsonList(o.Spec.(*networking.VirtualService).GetGateways()) })
		add("HOSTS", func(o *config.Object) string { return jsonList(o.Spec.(*networking.VirtualService).GetHosts()) })
	case "DestinationRule":
		add("HOST", func(o *config.Object) string { return o.Spec.(*networking.DestinationRule).GetHost() })
	case "ServiceEntry":
		add("HOSTS", func(o *config.Object) string { return jsonList(o.Spec.(*networking.ServiceEntry).GetHosts()) })
		add("LOCATION", func(o *config.Object) string { return o.Spec.(*networking.ServiceEntry).GetLocation().String() })
		add("RESOLUTION", func(o *config.Object) string { return o.Spec.(*networking.ServiceEntry).GetResolution().String() })
	case "PeerAuthentication":
		add("MODE", func(o *config.Object) string {
			if m := o.Spec.(*security.PeerAuthentication).GetMtls(); m != nil {
				return m.GetMode().String()
			}
			return ""
		})
	case "AuthorizationPolicy":
		add("ACTION", func(o *config.Object) string { return o.Spec.(*security.AuthorizationPolicy).GetAction().String() })
	case "Service":
		add("TYPE", func(o *config.Object) string { return serviceType(o.Spec.(*corev1.Service)) })
		add("CLUSTER-IP", func(o *config.Object) string { return orNone(o.Spec.(*corev1.Service).Spec.ClusterIP) })
		add("EXTERNAL-IP", func(o *config.Object) string { return externalIP(o.Spec.(*corev1.Service)) })
		add("PORT(S)", func(o *config.Object) string { return servicePorts(o.Spec.(*corev1.Service)) })
	case "Pod":
		add("READY", func(o *config.Object) string { return podReady(o.Spec.(*corev1.Pod)) })
		add("STATUS", func(o *config.Object) string { return podStatus(o.Spec.(*corev1.Pod)) })
		add("RESTARTS", func(o *config.Object) string { return strconv.Itoa(podRestarts(o.Spec.(*corev1.Pod))) })
	case "Deployment":
		add("READY", func(o *config.Object) string {
			d := o.Spec.(*appsv1.Deployment)
			return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desiredReplicas(d))
		})
		add("UP-TO-DATE", func(o *config.Object) string {
			return strconv.Itoa(int(o.Spec.(*appsv1.Deployment).Status.UpdatedReplicas))
		})
		add("AVAILABLE", func(o *config.Object) string {
			return strconv.Itoa(int(o.Spec.(*appsv1.Deployment).Status.AvailableReplicas))
		})
	case "Namespace":
		add("STATUS", func(o *config.Object) string {
			if p := o.Spec.(*corev1.Namespace).Status.Phase; p != "" {
				return string(p)
			}
			return string(corev1.NamespaceActive)
		})
	case "ConfigMap":
		add("DATA", func(o *config.Object) string {
			cm := o.Spec.(*corev1.ConfigMap)
			return strconv.Itoa(len(cm.Data) + len(cm.BinaryData))
		})
	case "ServiceAccount":
		add("SECRETS", func(o *config.Object) string { return strconv.Itoa(len(o.Spec.(*corev1.ServiceAccount).Secrets)) })
	}
	cols = append(cols, age)
	if s.Kind == "WorkloadEntry" { // Istio's CRD lists the address after AGE
		add("ADDRESS", func(o *config.Object) string { return o.Spec.(*networking.WorkloadEntry).GetAddress() })
	}
	return cols
}

// wideColumns are the extra columns of -o wide.
func wideColumns(s *config.Schema) []column {
	switch s.Kind {
	case "Pod":
		return []column{
			{header: "IP", value: func(o *config.Object) string { return orNone(o.Spec.(*corev1.Pod).Status.PodIP) }},
			{header: "NODE", value: func(o *config.Object) string { return orNone(o.Spec.(*corev1.Pod).Spec.NodeName) }},
		}
	case "Service":
		return []column{{header: "SELECTOR", value: func(o *config.Object) string {
			return formatLabels(o.Spec.(*corev1.Service).Spec.Selector)
		}}}
	case "Deployment":
		return []column{
			{header: "CONTAINERS", value: func(o *config.Object) string {
				return containerField(o.Spec.(*appsv1.Deployment), func(c corev1.Container) string { return c.Name })
			}},
			{header: "IMAGES", value: func(o *config.Object) string {
				return containerField(o.Spec.(*appsv1.Deployment), func(c corev1.Container) string { return c.Image })
			}},
			{header: "SELECTOR", value: func(o *config.Object) string {
				if sel := o.Spec.(*appsv1.Deployment).Spec.Selector; sel != nil {
					return formatLabels(sel.MatchLabels)
				}
				return "<none>"
			}},
		}
	}
	return nil
}

func formatAge(created, now time.Time) string {
	if created.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(created))
}

// jsonList renders a string list as kubectl renders an array printer
// column: ["a","b"]; nothing for an empty list.
func jsonList(items []string) string {
	if len(items) == 0 {
		return ""
	}
	b, _ := json.Marshal(items)
	return string(b)
}

func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func serviceType(s *corev1.Service) string {
	if s.Spec.Type == "" {
		return string(corev1.ServiceTypeClusterIP)
	}
	return string(s.Spec.Type)
}

func externalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return orNone(s.Spec.ExternalName)
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(s.Spec.ExternalIPs) > 0 {
		return strings.Join(s.Spec.ExternalIPs, ",")
	}
	return "<none>"
}

func servicePorts(s *corev1.Service) string {
	if len(s.Spec.Ports) == 0 {
		return "<none>"
	}
	parts := make([]string, len(s.Spec.Ports))
	for i, p := range s.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if p.NodePort != 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, proto)
		}
	}
	return strings.Join(parts, ",")
}

func podReady(p *corev1.Pod) string {
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
}

// podStatus is kubectl's STATUS: a waiting or terminated container's reason
// wins over the phase.
func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	status := string(p.Status.Phase)
	if p.Status.Reason != "" {
		status = p.Status.Reason
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			status = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			status = cs.State.Terminated.Reason
		}
	}
	if status == "" {
		return string(corev1.PodPending)
	}
	return status
}

func podRestarts(p *corev1.Pod) int {
	n := 0
	for _, cs := range p.Status.ContainerStatuses {
		n += int(cs.RestartCount)
	}
	return n
}

func desiredReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func containerField(d *appsv1.Deployment, f func(corev1.Container) string) string {
	var parts []string
	for _, c := range d.Spec.Template.Spec.Containers {
		parts = append(parts, f(c))
	}
	return strings.Join(parts, ",")
}
