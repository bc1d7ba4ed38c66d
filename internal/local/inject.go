package local

import "github.com/skein-mesh/skein/internal/inject"

// Local mode injects with Istio's policy from internal/inject; these names
// keep the runner's code short.
type (
	proxyMode         = inject.Mode
	injectionDecision = inject.Decision
)

const (
	noProxy      = inject.None
	sidecarProxy = inject.Sidecar
	gatewayProxy = inject.Gateway

	keySidecarInject        = inject.KeyInject
	annotationTemplates     = inject.AnnotationTemplates
	annotationSidecarStatus = inject.AnnotationStatus
	gatewayTemplate         = inject.GatewayTemplate
	proxyContainerName      = inject.ProxyContainerName
)

func proxyModeFor(d injectionDecision) proxyMode { return inject.ModeFor(d) }
