package local

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/skein-mesh/skein/internal/kubelet"
)

// podInfos describes the running pods, sorted by namespace and name.
func (c *controller) podInfos() []PodInfo {
	pods := c.snapshot()
	infos := make([]PodInfo, 0, len(pods))
	for _, key := range slices.Sorted(maps.Keys(pods)) {
		mp := pods[key]
		st, _ := mp.State()
		info := PodInfo{
			Namespace: mp.Plan().Namespace, Name: mp.Plan().Name, Deployment: mp.Plan().Deployment,
			PodIP: mp.Plan().PodIP, AppIP: mp.Plan().AppIP, Ready: st.Ready,
		}
		if mp.Plan().Mode != noProxy {
			info.Proxy = mp.Plan().Mode.String()
		}
		for _, c := range st.Containers {
			ci := ContainerInfo{Name: c.Name, Ready: c.Ready, Running: c.Running, RestartCount: c.RestartCount}
			if c.Reason != "" {
				ci.Problem = c.Reason + ": " + c.Message
			}
			info.Containers = append(info.Containers, ci)
		}
		infos = append(infos, info)
	}
	sort.SliceStable(infos, func(i, j int) bool {
		if infos[i].Namespace != infos[j].Namespace {
			return infos[i].Namespace < infos[j].Namespace
		}
		return infos[i].Name < infos[j].Name
	})
	return infos
}

// notReadySummary names every pod that is not ready and why.
func (c *controller) notReadySummary() string {
	var parts []string
	for _, p := range c.podInfos() {
		if p.Ready {
			continue
		}
		var cs []string
		for _, c := range p.Containers {
			if !c.Ready {
				s := c.Name
				if c.Problem != "" {
					s += " (" + c.Problem + ")"
				}
				cs = append(cs, s)
			}
		}
		parts = append(parts, p.Namespace+"/"+p.Name+": not ready: "+strings.Join(cs, ", "))
	}
	if len(parts) == 0 {
		return "no pods"
	}
	return strings.Join(parts, "; ")
}

// statusPrinter writes the short human status of `skein up`.
type statusPrinter struct {
	mu        sync.Mutex
	w         io.Writer
	header    bool
	upHint    func() string
	printedUp bool
}

func (p *statusPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *statusPrinter) pod(plan *kubelet.Plan, st kubelet.PodState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.header {
		fmt.Fprintf(p.w, "%-12s %-48s %-6s %s\n", "NAMESPACE", "NAME", "READY", "IP")
		p.header = true
	}
	r, t := st.ReadyCount()
	fmt.Fprintf(p.w, "%-12s %-48s %-6s %s\n", plan.Namespace, plan.Name, fmt.Sprintf("%d/%d", r, t), plan.PodIP)
}

func (p *statusPrinter) meshUp(pods int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printedUp {
		fmt.Fprintf(p.w, "All %s ready.\n", podCount(pods))
		return
	}
	p.printedUp = true
	hint := ""
	if p.upHint != nil {
		hint = p.upHint()
	}
	fmt.Fprintf(p.w, "Mesh is up: %s ready.%s\n", podCount(pods), hint)
}

func newUID() string {
	s := randomSuffix() + randomSuffix() + randomSuffix() + randomSuffix()
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20]
}

func podCount(n int) string {
	if n == 1 {
		return "1 pod"
	}
	return fmt.Sprintf("%d pods", n)
}
