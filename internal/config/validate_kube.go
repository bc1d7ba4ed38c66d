package config

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

func (v *validator) deployment(d *appsv1.Deployment) {
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		v.errorf("spec.replicas", "must not be negative")
	}
	if d.Spec.Selector == nil || (len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0) {
		v.errorf("spec.selector", "required field is missing")
	} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
		v.errorf("spec.selector", "invalid selector: %v", err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		v.errorf("spec.template.metadata.labels", "`selector` does not match template `labels` (selector %s, labels %s)",
			sel, labels.Set(d.Spec.Template.Labels))
	}
	v.labels("spec.template.metadata.labels", d.Spec.Template.Labels)
	v.podSpec(&d.Spec.Template.Spec, "spec.template.spec")
}

func (v *validator) podSpec(ps *corev1.PodSpec, f string) {
	if len(ps.Containers) == 0 {
		v.errorf(f+".containers", "a pod needs at least one container")
	}
	names := map[string]bool{}
	check := func(field string, c *corev1.Container) {
		switch {
		case c.Name == "":
			v.errorf(field+".name", "required field is missing")
		case names[c.Name]:
			v.errorf(field+".name", "duplicate container name %q", c.Name)
		default:
			v.dnsLabel(field+".name", c.Name)
		}
		names[c.Name] = true
		// Kubernetes needs an image; Skein's local runner can also start a
		// container from its command alone.
		if c.Image == "" && len(c.Command) == 0 {
			v.errorf(field+".image", "required field is missing (or give a command to run locally)")
		}
		for j, p := range c.Ports {
			v.port(fmt.Sprintf("%s.ports[%d].containerPort", field, j), uint32(max(p.ContainerPort, 0)), true)
		}
	}
	for i := range ps.InitContainers {
		check(fieldAt(f+".initContainers", i), &ps.InitContainers[i])
	}
	for i := range ps.Containers {
		check(fieldAt(f+".containers", i), &ps.Containers[i])
	}
}

func (v *validator) service(s *corev1.Service) {
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		v.errorf("spec.type", "unsupported value %q (want ClusterIP, NodePort, LoadBalancer or ExternalName)", s.Spec.Type)
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		f := fieldAt("spec.ports", i)
		v.port(f+".port", uint32(max(p.Port, 0)), true)
		switch {
		case p.Name == "" && len(s.Spec.Ports) > 1:
			v.errorf(f+".name", "required when a Service has more than one port")
		case p.Name != "" && names[p.Name]:
			v.errorf(f+".name", "duplicate port name %q", p.Name)
		case p.Name != "":
			v.dnsLabel(f+".name", p.Name)
		}
		names[p.Name] = true
		switch p.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			v.errorf(f+".protocol", "unsupported value %q (want TCP, UDP or SCTP)", p.Protocol)
		}
		switch p.TargetPort.Type {
		case intstr.Int:
			v.port(f+".targetPort", uint32(max(p.TargetPort.IntVal, 0)), false)
		case intstr.String:
			for _, msg := range validation.IsValidPortName(p.TargetPort.StrVal) {
				v.errorf(f+".targetPort", "invalid port name %q: %s", p.TargetPort.StrVal, msg)
			}
		}
	}
}
