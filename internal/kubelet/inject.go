package kubelet

import "github.com/skein-mesh/skein/internal/inject"

// Which proxy a pod runs, in internal/inject's terms; these names keep the
// kubelet's code short.
type proxyMode = inject.Mode

const (
	noProxy            = inject.None
	sidecarProxy       = inject.Sidecar
	gatewayProxy       = inject.Gateway
	proxyContainerName = inject.ProxyContainerName
)
