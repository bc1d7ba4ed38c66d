package dashboard

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/skein-mesh/skein/internal/config"
	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// configKinds are the Istio kinds the dashboard shows, in display order.
var configKinds = []string{
	"Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "Sidecar",
	"PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy",
}

// rootNamespace holds mesh-wide policies, as Istio's default root namespace.
const rootNamespace = "istio-system"

// ConfigItem is one Istio object with its validation messages.
type ConfigItem struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Hosts     []string `json:"hosts,omitempty"`
	// Gateways and Destinations of a VirtualService: where it applies and
	// the hosts it routes to.
	Gateways     []string `json:"gateways,omitempty"`
	Destinations []string `json:"destinations,omitempty"`
	// Selector is the workload selector's labels; nil selects every
	// workload of the namespace (all namespaces in the root namespace).
	Selector map[string]string `json:"selector,omitempty"`
	Errors   []string          `json:"errors"`
	Warnings []string          `json:"warnings"`
}

type selectorHolder interface {
	GetSelector() *typev1beta1.WorkloadSelector
}

func configItem(o *config.Object) ConfigItem {
	it := ConfigItem{Kind: o.GVK.Kind, Namespace: o.Meta.Namespace, Name: o.Meta.Name, Errors: []string{}, Warnings: []string{}}
	switch s := o.Spec.(type) {
	case *networking.VirtualService:
		it.Hosts, it.Gateways = s.GetHosts(), s.GetGateways()
		for _, r := range s.GetHttp() {
			for _, d := range r.GetRoute() {
				it.Destinations = appendUnique(it.Destinations, d.GetDestination().GetHost())
			}
			if m := r.GetMirror(); m != nil {
				it.Destinations = appendUnique(it.Destinations, m.GetHost())
			}
		}
		for _, r := range s.GetTcp() {
			for _, d := range r.GetRoute() {
				it.Destinations = appendUnique(it.Destinations, d.GetDestination().GetHost())
			}
		}
		for _, r := range s.GetTls() {
			for _, d := range r.GetRoute() {
				it.Destinations = appendUnique(it.Destinations, d.GetDestination().GetHost())
			}
		}
	case *networking.DestinationRule:
		it.Hosts = []string{s.GetHost()}
	case *networking.ServiceEntry:
		it.Hosts = s.GetHosts()
	case *networking.Gateway:
		for _, srv := range s.GetServers() {
			it.Hosts = append(it.Hosts, srv.GetHosts()...)
		}
		it.Selector = s.GetSelector()
	case selectorHolder:
		it.Selector = s.GetSelector().GetMatchLabels()
	}
	errs, warns := config.ValidateAll(o)
	for _, e := range errs {
		it.Errors = append(it.Errors, e.Error())
	}
	for _, w := range warns {
		it.Warnings = append(it.Warnings, w.String())
	}
	return it
}

func listConfig(ctx context.Context, api ConfigLister) ([]ConfigItem, error) {
	var out []ConfigItem
	for _, kind := range configKinds {
		objs, _, err := api.List(ctx, kind, "")
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			out = append(out, configItem(o))
		}
	}
	return out, nil
}

// appliesTo reports whether a config item affects traffic to the service
// or its workloads: routing and traffic policy by host, policies by
// namespace and workload selector. A VirtualService applies when it routes
// mesh traffic for the service's host (no gateways, or "mesh" among them)
// or sends traffic to the service from anywhere (a gateway's routes).
func (it ConfigItem) appliesTo(svc serviceInfo, workloadLabels []map[string]string) bool {
	switch it.Kind {
	case "VirtualService":
		for _, h := range it.Destinations {
			if hostMatches(h, it.Namespace, svc) {
				return true
			}
		}
		if len(it.Gateways) > 0 && !slices.Contains(it.Gateways, "mesh") {
			return false
		}
		for _, h := range it.Hosts {
			if hostMatches(h, it.Namespace, svc) {
				return true
			}
		}
		return false
	case "DestinationRule", "ServiceEntry":
		for _, h := range it.Hosts {
			if hostMatches(h, it.Namespace, svc) {
				return true
			}
		}
		return false
	case "PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy", "Sidecar":
		if it.Namespace != svc.Namespace && it.Namespace != rootNamespace {
			return false
		}
		if len(it.Selector) == 0 {
			return true
		}
		for _, l := range workloadLabels {
			if selects(it.Selector, l) {
				return true
			}
		}
	}
	return false
}

// ServiceDetail is what the service page shows.
type ServiceDetail struct {
	Name      string       `json:"name"`
	Namespace string       `json:"namespace"`
	Ports     []int32      `json:"ports"`
	Workloads []Node       `json:"workloads"`
	Config    []ConfigItem `json:"config"`
	Inbound   []Edge       `json:"inbound"`
	Outbound  []Edge       `json:"outbound"`
	Health    string       `json:"health"`
}

func serviceDetail(svc serviceInfo, pods []podInfo, items []ConfigItem, g Graph) ServiceDetail {
	d := ServiceDetail{Name: svc.Name, Namespace: svc.Namespace, Ports: svc.Ports,
		Workloads: []Node{}, Config: []ConfigItem{}, Inbound: []Edge{}, Outbound: []Edge{}, Health: "idle"}
	var labels []map[string]string
	mine := map[string]bool{}
	for _, p := range pods {
		if p.Namespace == svc.Namespace && selects(svc.Selector, p.Labels) {
			labels = append(labels, p.Labels)
			mine[nodeID(p.Namespace, p.Workload)] = true
		}
	}
	for _, n := range g.Nodes {
		if mine[n.ID] {
			d.Workloads = append(d.Workloads, n)
		}
	}
	for _, it := range items {
		if it.appliesTo(svc, labels) {
			d.Config = append(d.Config, it)
		}
	}
	rank := map[string]int{"idle": 0, "green": 1, "orange": 2, "red": 3}
	for _, e := range g.Edges {
		if e.Service == svc.Name && e.ServiceNamespace == svc.Namespace {
			d.Inbound = append(d.Inbound, e)
			if rank[e.Health] > rank[d.Health] {
				d.Health = e.Health
			}
		}
		if mine[e.Source] {
			d.Outbound = append(d.Outbound, e)
		}
	}
	return d
}

// ServiceSummary is one row of the services list.
type ServiceSummary struct {
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"`
	Workloads int     `json:"workloads"`
	RPS       float64 `json:"rps"`
	ErrorPct  float64 `json:"errorPct"`
	Health    string  `json:"health"`
	Problems  int     `json:"problems"` // validation errors+warnings of applying config
}

func serviceSummaries(services []serviceInfo, pods []podInfo, items []ConfigItem, g Graph) []ServiceSummary {
	out := []ServiceSummary{}
	for _, s := range services {
		d := serviceDetail(s, pods, items, g)
		sum := ServiceSummary{Name: s.Name, Namespace: s.Namespace, Workloads: len(d.Workloads), Health: "idle"}
		var errRPS float64
		for _, e := range d.Inbound {
			sum.RPS += e.RPS
			errRPS += e.RPS * e.ErrorPct / 100
		}
		if sum.RPS > 0 {
			sum.ErrorPct = round(100*errRPS/sum.RPS, 1)
		}
		sum.RPS = round(sum.RPS, 3)
		sum.Health = health(sum.RPS, sum.ErrorPct)
		for _, it := range d.Config {
			sum.Problems += len(it.Errors) + len(it.Warnings)
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Compare(out[i].Namespace+"/"+out[i].Name, out[j].Namespace+"/"+out[j].Name) < 0
	})
	return out
}
