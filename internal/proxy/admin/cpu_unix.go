//go:build unix

package admin

import (
	"fmt"
	"io"
	"syscall"
)

// writeContainerCPU reports the CPU this proxy has used as cAdvisor's
// container_cpu_usage_seconds_total{container="istio-proxy"}. Outside
// Kubernetes nothing else measures the sidecar container, and in local mode
// the proxy process is the whole istio-proxy container, so Istio's
// IstioHighCpuUsage alert works unchanged. Prometheus adds pod and
// namespace from the scrape target.
func writeContainerCPU(w io.Writer) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return
	}
	secs := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	fmt.Fprintf(w, "# TYPE container_cpu_usage_seconds_total counter\ncontainer_cpu_usage_seconds_total{container=\"istio-proxy\"} %g\n", secs)
}
