package dashboard

import (
	"sort"
	"strings"
)

// Node is one workload in the service graph.
type Node struct {
	ID        string   `json:"id"` // "ns/workload"
	Workload  string   `json:"workload"`
	Namespace string   `json:"namespace"`
	App       string   `json:"app,omitempty"`
	Version   string   `json:"version,omitempty"`
	Services  []string `json:"services,omitempty"` // services it serves, "ns/name"
	Pods      int      `json:"pods"`
	Layer     int      `json:"layer"`
	X         float64  `json:"x"`
	Y         float64  `json:"y"`
	// Kind is "workload", or "service" for a service whose requests
	// reached no workload.
	Kind string `json:"kind"`
	// Health is the worst health of the node's inbound edges.
	Health string `json:"health"`
}

// Graph is what the graph page draws.
type Graph struct {
	Nodes         []Node  `json:"nodes"`
	Edges         []Edge  `json:"edges"`
	WindowSeconds float64 `json:"windowSeconds"`
	Width         float64 `json:"width"`
	Height        float64 `json:"height"`
	Error         string  `json:"error,omitempty"`
}

// Layout constants, in SVG user units.
const (
	layerGap = 230.0
	rowGap   = 90.0
	margin   = 80.0
)

// buildGraph joins the running workloads with the edges and lays them out
// in layers by call depth: a workload nobody calls (the ingress gateway,
// "unknown") is layer 0, and every callee sits one layer right of its
// deepest caller, so Bookinfo reads ingress → productpage →
// reviews/details → ratings. Within a layer nodes sort by service, then
// name, so the picture is the same on every refresh.
func buildGraph(pods []podInfo, services []serviceInfo, edges []Edge) Graph {
	nodes := map[string]*Node{}
	add := func(ns, workload string) *Node {
		id := nodeID(ns, workload)
		n := nodes[id]
		if n == nil {
			n = &Node{ID: id, Workload: workload, Namespace: ns, Kind: "workload", Health: "idle"}
			if svc, ok := strings.CutPrefix(workload, serviceNodePrefix); ok {
				n.Kind, n.App, n.Services = "service", svc, []string{ns + "/" + svc}
			}
			nodes[id] = n
		}
		return n
	}
	for _, p := range pods {
		n := add(p.Namespace, p.Workload)
		n.Pods++
		n.App = firstOf(p.Labels["app"], p.Labels["service.istio.io/canonical-name"])
		n.Version = firstOf(p.Labels["version"], p.Labels["service.istio.io/canonical-revision"])
		for _, s := range services {
			if s.Namespace == p.Namespace && selects(s.Selector, p.Labels) {
				n.Services = appendUnique(n.Services, s.Namespace+"/"+s.Name)
			}
		}
	}
	out := map[string][]string{}
	in := map[string]int{}
	rank := map[string]int{"idle": 0, "green": 1, "orange": 2, "red": 3}
	for _, e := range edges {
		add(e.SourceNamespace, e.SourceWorkload)
		d := add(e.DestinationNamespace, e.DestinationWorkload)
		if rank[e.Health] > rank[d.Health] {
			d.Health = e.Health
		}
		if e.Source != e.Destination {
			out[e.Source] = append(out[e.Source], e.Destination)
			in[e.Destination]++
		}
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Longest path from a root; a cycle is cut at the first visit.
	layer := map[string]int{}
	var visit func(id string, depth int, onPath map[string]bool)
	visit = func(id string, depth int, onPath map[string]bool) {
		if onPath[id] {
			return
		}
		if l, seen := layer[id]; seen && l >= depth {
			return
		}
		layer[id] = depth
		onPath[id] = true
		for _, next := range out[id] {
			visit(next, depth+1, onPath)
		}
		delete(onPath, id)
	}
	for _, id := range ids {
		if in[id] == 0 {
			visit(id, 0, map[string]bool{})
		}
	}
	for _, id := range ids { // nodes only reachable through a cycle
		if _, ok := layer[id]; !ok {
			visit(id, 0, map[string]bool{})
		}
	}
	byLayer := map[int][]*Node{}
	maxLayer, maxRows := 0, 0
	for _, id := range ids {
		n := nodes[id]
		n.Layer = layer[id]
		byLayer[n.Layer] = append(byLayer[n.Layer], n)
		maxLayer = max(maxLayer, n.Layer)
	}
	for _, ns := range byLayer {
		maxRows = max(maxRows, len(ns))
	}
	height := 2*margin + float64(max(maxRows-1, 0))*rowGap
	g := Graph{Edges: edges, Width: 2*margin + float64(maxLayer)*layerGap + 120, Height: height}
	for l := 0; l <= maxLayer; l++ {
		ns := byLayer[l]
		sort.SliceStable(ns, func(i, j int) bool {
			si, sj := firstOf(first(ns[i].Services), ns[i].ID), firstOf(first(ns[j].Services), ns[j].ID)
			if si != sj {
				return si < sj
			}
			return ns[i].ID < ns[j].ID
		})
		// Centre each column vertically.
		top := margin + (float64(maxRows-len(ns))*rowGap)/2
		for i, n := range ns {
			n.X = margin + float64(l)*layerGap
			n.Y = top + float64(i)*rowGap
			g.Nodes = append(g.Nodes, *n)
		}
	}
	if g.Nodes == nil {
		g.Nodes = []Node{}
	}
	if g.Edges == nil {
		g.Edges = []Edge{}
	}
	return g
}

// workloadsOf indexes which workloads serve each service.
func workloadsOf(pods []podInfo, services []serviceInfo) serviceWorkloads {
	idx := map[string][]string{}
	for _, s := range services {
		for _, p := range pods {
			if p.Namespace == s.Namespace && selects(s.Selector, p.Labels) {
				idx[s.Namespace+"/"+s.Name] = appendUnique(idx[s.Namespace+"/"+s.Name], p.Workload)
			}
		}
	}
	return func(ns, svc string) []string { return idx[ns+"/"+svc] }
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
