package local

import (
	"strings"
)

// proxyMode says which proxy, if any, runs in a pod.
type proxyMode int

const (
	noProxy      proxyMode = iota
	sidecarProxy           // `skein proxy sidecar` next to the app containers
	gatewayProxy           // `skein proxy router` instead of the istio-proxy container
)

func (m proxyMode) String() string {
	switch m {
	case sidecarProxy:
		return "sidecar"
	case gatewayProxy:
		return "gateway"
	}
	return "none"
}

// Istio's injection labels and annotations.
const (
	labelNamespaceInjection = "istio-injection"         // namespace: enabled | disabled
	labelRevision           = "istio.io/rev"            // namespace or pod: revision-based injection
	keySidecarInject        = "sidecar.istio.io/inject" // pod label (or legacy annotation): "true" | "false"
	annotationTemplates     = "inject.istio.io/templates"
	annotationSidecarStatus = "sidecar.istio.io/status"
	gatewayTemplate         = "gateway"
	proxyContainerName      = "istio-proxy"
)

// ignoredNamespaces are never injected, as in Istio's injector.
var ignoredNamespaces = map[string]bool{
	"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true,
}

// injectionDecision is the input of Istio's injection policy for one pod.
type injectionDecision struct {
	Namespace       string
	NamespaceLabels map[string]string
	PodLabels       map[string]string
	PodAnnotations  map[string]string
	HostNetwork     bool
}

// proxyModeFor applies Istio's sidecar-injection rules (what the default
// revision's webhooks plus the injector's policy decide):
//   - a pod-level "false" (label, or the legacy annotation) never injects;
//   - a namespace labelled istio-injection with anything but "enabled" never
//     injects, not even a pod labelled "true";
//   - istio-injection=enabled, istio.io/rev on the namespace or the pod, or a
//     pod-level "true" inject;
//   - hostNetwork pods and system namespaces are never injected.
//
// An injected pod whose inject.istio.io/templates names "gateway" runs the
// gateway proxy in place of its istio-proxy container.
func proxyModeFor(d injectionDecision) proxyMode {
	if d.HostNetwork || ignoredNamespaces[d.Namespace] {
		return noProxy
	}
	// The label is the current API; the annotation is the deprecated one and
	// loses when both are set, as in Istio.
	podValue, podSet := d.PodLabels[keySidecarInject]
	if !podSet {
		podValue, podSet = d.PodAnnotations[keySidecarInject]
	}
	podTrue := false
	if podSet && podValue != "" {
		switch strings.ToLower(podValue) {
		case "y", "yes", "true", "on":
			podTrue = true
		default:
			// Istio treats every other value, "false" included, as opt-out.
			return noProxy
		}
	}
	nsValue, nsSet := d.NamespaceLabels[labelNamespaceInjection]
	_, nsRev := d.NamespaceLabels[labelRevision]
	_, podRev := d.PodLabels[labelRevision]
	inject := false
	switch {
	case nsSet:
		inject = nsValue == "enabled"
	case podTrue, nsRev, podRev:
		inject = true
	}
	if !inject {
		return noProxy
	}
	for _, t := range strings.Split(d.PodAnnotations[annotationTemplates], ",") {
		if strings.TrimSpace(t) == gatewayTemplate {
			return gatewayProxy
		}
	}
	return sidecarProxy
}
