package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Istio's per-pod overrides of the proxy's resources.
const (
	AnnotationProxyCPU         = "sidecar.istio.io/proxyCPU"
	AnnotationProxyMemory      = "sidecar.istio.io/proxyMemory"
	AnnotationProxyCPULimit    = "sidecar.istio.io/proxyCPULimit"
	AnnotationProxyMemoryLimit = "sidecar.istio.io/proxyMemoryLimit"
)

// withValues applies the injector values (values.global.proxy.*) over the
// parameters the control plane was started with.
func (p Params) withValues() Params {
	if p.Config == nil {
		return p
	}
	if v := p.Config.Proxy.Image; v != "" {
		p.ProxyImage = v
	}
	if v := p.Config.Proxy.LogLevel; v != "" {
		p.LogLevel = v
	}
	return p
}

// proxyResources sets the proxy container's resources: the values'
// global.proxy.resources, then the pod's sidecar.istio.io/proxy*
// annotations, as Istio's sidecar template does. A container the pod
// declares itself keeps what it sets.
func proxyResources(c *corev1.Container, cfg *Config, annotations map[string]string) error {
	if cfg != nil && cfg.Proxy.Resources != nil {
		r := cfg.Proxy.Resources.DeepCopy()
		for k, v := range c.Resources.Requests {
			setQuantity(&r.Requests, k, v)
		}
		for k, v := range c.Resources.Limits {
			setQuantity(&r.Limits, k, v)
		}
		c.Resources = *r
	}
	for _, a := range []struct {
		name   string
		limits bool
		res    corev1.ResourceName
	}{
		{AnnotationProxyCPU, false, corev1.ResourceCPU}, {AnnotationProxyMemory, false, corev1.ResourceMemory},
		{AnnotationProxyCPULimit, true, corev1.ResourceCPU}, {AnnotationProxyMemoryLimit, true, corev1.ResourceMemory},
	} {
		v, ok := annotations[a.name]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("annotation %s: %q is not a quantity", a.name, v)
		}
		if a.limits {
			setQuantity(&c.Resources.Limits, a.res, q)
		} else {
			setQuantity(&c.Resources.Requests, a.res, q)
		}
	}
	return nil
}

func setQuantity(l *corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
	if *l == nil {
		*l = corev1.ResourceList{}
	}
	(*l)[name] = q
}

// proxyFirst moves istio-proxy to the front of the containers, so the
// kubelet starts it before the application
// (values.global.proxy.holdApplicationUntilProxyStarts).
func proxyFirst(spec *corev1.PodSpec) {
	for i, c := range spec.Containers {
		if c.Name == ProxyContainerName && i > 0 {
			copy(spec.Containers[1:i+1], spec.Containers[:i])
			spec.Containers[0] = c
			return
		}
	}
}
