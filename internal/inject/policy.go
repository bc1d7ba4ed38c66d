// Package inject is Istio's sidecar injection as pure functions: the policy
// (does this pod get a proxy, and which) and the template (what the
// injected pod looks like). Local mode, `skein kube-inject` and the control
// plane's admission webhook all call it, so a pod is injected the same way
// wherever it runs.
//
// Traffic capture: Skein has no iptables or CNI plug-in. Injected app
// containers get HTTP_PROXY pointing at the sidecar's outbound port on the
// pod IP, as local mode does (docs/architecture.md, "Local mode"); the node
// agent runs pods on loopback addresses the same way. Pods on real
// container nodes would need Istio's CNI or an istio-init container to
// redirect traffic, which Skein does not ship yet.
package inject

import "strings"

// Mode says which proxy, if any, runs in a pod.
type Mode int

const (
	None    Mode = iota
	Sidecar      // `skein proxy sidecar` next to the app containers
	Gateway      // `skein proxy router` in the pod's istio-proxy container
)

func (m Mode) String() string {
	switch m {
	case Sidecar:
		return "sidecar"
	case Gateway:
		return "gateway"
	}
	return "none"
}

// Istio's injection labels and annotations.
const (
	LabelNamespaceInjection = "istio-injection"         // namespace: enabled | disabled
	LabelRevision           = "istio.io/rev"            // namespace or pod: revision-based injection
	KeyInject               = "sidecar.istio.io/inject" // pod label (or legacy annotation): "true" | "false"
	AnnotationTemplates     = "inject.istio.io/templates"
	AnnotationStatus        = "sidecar.istio.io/status"
	AnnotationProxyImage    = "sidecar.istio.io/proxyImage"
	AnnotationProxyConfig   = "proxy.istio.io/config"
	GatewayTemplate         = "gateway"
	SidecarTemplate         = "sidecar"
	ProxyContainerName      = "istio-proxy"
)

// ignoredNamespaces are never injected, as in Istio's injector.
var ignoredNamespaces = map[string]bool{
	"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true,
}

// Decision is the input of Istio's injection policy for one pod.
type Decision struct {
	Namespace       string
	NamespaceLabels map[string]string
	PodLabels       map[string]string
	PodAnnotations  map[string]string
	HostNetwork     bool
	// Config is the injector configuration (policy and selectors); nil
	// is Istio's default, policy enabled.
	Config *Config
}

// ModeFor applies Istio's sidecar-injection rules (what the default
// revision's webhooks plus the injector's policy decide):
//   - a pod-level "false" (label, or the legacy annotation) never injects;
//   - a namespace labelled istio-injection with anything but "enabled" never
//     injects, not even a pod labelled "true";
//   - istio-injection=enabled, istio.io/rev on the namespace or the pod, or a
//     pod-level "true" inject;
//   - hostNetwork pods and system namespaces are never injected;
//   - then the injector config decides (Istio's injectRequired): an explicit
//     pod value, neverInjectSelector, alwaysInjectSelector, the policy.
//
// An injected pod whose inject.istio.io/templates names "gateway" runs the
// gateway proxy in its istio-proxy container.
func ModeFor(d Decision) Mode {
	if d.HostNetwork || ignoredNamespaces[d.Namespace] {
		return None
	}
	// The label is the current API; the annotation is the deprecated one and
	// loses when both are set, as in Istio.
	podValue, podSet := d.PodLabels[KeyInject]
	if !podSet {
		podValue, podSet = d.PodAnnotations[KeyInject]
	}
	podTrue := false
	if podSet && podValue != "" {
		switch strings.ToLower(podValue) {
		case "y", "yes", "true", "on":
			podTrue = true
		default:
			// Istio treats every other value, "false" included, as opt-out.
			return None
		}
	}
	nsValue, nsSet := d.NamespaceLabels[LabelNamespaceInjection]
	_, nsRev := d.NamespaceLabels[LabelRevision]
	_, podRev := d.PodLabels[LabelRevision]
	inject := false
	switch {
	case nsSet:
		inject = nsValue == "enabled"
	case podTrue, nsRev, podRev:
		inject = true
	}
	if !inject || !d.Config.required(d.PodLabels, podSet && podValue != "", podTrue) {
		return None
	}
	if hasTemplate(d.PodAnnotations, GatewayTemplate) {
		return Gateway
	}
	return Sidecar
}

func hasTemplate(annotations map[string]string, name string) bool {
	for _, t := range strings.Split(annotations[AnnotationTemplates], ",") {
		if strings.TrimSpace(t) == name {
			return true
		}
	}
	return false
}
