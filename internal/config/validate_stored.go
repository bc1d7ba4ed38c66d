package config

import (
	k8snetworking "k8s.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Kinds Skein stores but does not act on yet get the basic checks of their
// schemas (what the API server would refuse) and a warning saying so.

const notProgrammed = "stored, but Skein does not program %s resources yet: no proxy configuration is generated from it"

func (v *validator) storedOnly(obj *Object) {
	switch s := obj.Spec.(type) {
	case *k8snetworking.NetworkPolicy:
		v.warnf("", "NetworkPolicy is stored, not enforced in local mode: Skein runs no network plugin (in Kubernetes mode, the cluster's network plugin enforces it)")
	case *k8snetworking.Ingress:
		v.warnf("", notProgrammed, "Ingress")
	case *gatewayv1.Gateway:
		v.gatewayAPIGateway(s)
		v.warnf("", notProgrammed, "Gateway API")
	case *gatewayv1.HTTPRoute:
		v.parentRefs(s.Spec.ParentRefs)
		if len(s.Spec.Rules) > 64 {
			v.errorf("spec.rules", "Too many: %d: must have at most 64 items", len(s.Spec.Rules))
		}
		v.warnf("", notProgrammed, "Gateway API")
	case *gatewayv1.GRPCRoute:
		v.parentRefs(s.Spec.ParentRefs)
		v.warnf("", notProgrammed, "Gateway API")
	case *gatewayv1.TCPRoute:
		v.parentRefs(s.Spec.ParentRefs)
		if len(s.Spec.Rules) == 0 {
			v.errorf("spec.rules", "Required value")
		}
		v.warnf("", notProgrammed, "Gateway API")
	case *gatewayv1.TLSRoute:
		v.parentRefs(s.Spec.ParentRefs)
		if len(s.Spec.Rules) == 0 {
			v.errorf("spec.rules", "Required value")
		}
		v.warnf("", notProgrammed, "Gateway API")
	case *gatewayv1.GatewayClass:
		if s.Spec.ControllerName == "" {
			v.errorf("spec.controllerName", "Required value")
		}
	case *gatewayv1.ReferenceGrant:
		if len(s.Spec.From) == 0 {
			v.errorf("spec.from", "Required value")
		}
		if len(s.Spec.To) == 0 {
			v.errorf("spec.to", "Required value")
		}
	}
}

func (v *validator) gatewayAPIGateway(gw *gatewayv1.Gateway) {
	if gw.Spec.GatewayClassName == "" {
		v.errorf("spec.gatewayClassName", "Required value")
	}
	if len(gw.Spec.Listeners) == 0 {
		v.errorf("spec.listeners", "Required value")
	}
	names := map[gatewayv1.SectionName]bool{}
	for i, l := range gw.Spec.Listeners {
		f := fieldAt("spec.listeners", i)
		switch {
		case l.Name == "":
			v.errorf(f+".name", "Required value")
		case names[l.Name]:
			v.errorf(f+".name", "Duplicate value: %q (Listener name must be unique within the Gateway)", l.Name)
		default:
			v.dnsLabel(f+".name", string(l.Name))
		}
		names[l.Name] = true
		if l.Port < 1 || l.Port > 65535 {
			v.errorf(f+".port", "Invalid value: %d: must be between 1 and 65535", l.Port)
		}
		if l.Protocol == "" {
			v.errorf(f+".protocol", "Required value")
		}
		if l.Hostname != nil {
			v.hostname(f+".hostname", string(*l.Hostname))
		}
		if (l.Protocol == gatewayv1.HTTPSProtocolType) && l.TLS == nil {
			v.errorf(f+".tls", "tls must be specified for protocols ['HTTPS', 'TLS']")
		}
	}
}

func (v *validator) parentRefs(refs []gatewayv1.ParentReference) {
	for i, r := range refs {
		if r.Name == "" {
			v.errorf(fieldAt("spec.parentRefs", i)+".name", "Required value")
		}
	}
	if len(refs) > 32 {
		v.errorf("spec.parentRefs", "Too many: %d: must have at most 32 items", len(refs))
	}
}
