package inject

import "testing"

func TestModeFor(t *testing.T) {
	enabled := map[string]string{LabelNamespaceInjection: "enabled"}
	disabled := map[string]string{LabelNamespaceInjection: "disabled"}
	revision := map[string]string{LabelRevision: "default"}
	podTrue := map[string]string{KeyInject: "true"}
	podFalse := map[string]string{KeyInject: "false"}
	gateway := map[string]string{AnnotationTemplates: "gateway"}
	tests := []struct {
		name        string
		namespace   string
		nsLabels    map[string]string
		podLabels   map[string]string
		annotations map[string]string
		hostNetwork bool
		want        Mode
	}{
		{name: "no labels anywhere", want: None},
		{name: "namespace enabled", nsLabels: enabled, want: Sidecar},
		{name: "namespace revision", nsLabels: revision, want: Sidecar},
		{name: "pod revision label", podLabels: revision, want: Sidecar},
		{name: "namespace disabled", nsLabels: disabled, want: None},
		{name: "namespace other value", nsLabels: map[string]string{LabelNamespaceInjection: "yes"}, want: None},
		{name: "pod label true without namespace label", podLabels: podTrue, want: Sidecar},
		{name: "pod annotation true without namespace label", annotations: podTrue, want: Sidecar},
		{name: "pod label false in enabled namespace", nsLabels: enabled, podLabels: podFalse, want: None},
		{name: "pod annotation false in enabled namespace", nsLabels: enabled, annotations: podFalse, want: None},
		{name: "pod label true in disabled namespace", nsLabels: disabled, podLabels: podTrue, want: None},
		{name: "label wins over annotation", nsLabels: enabled, podLabels: podTrue, annotations: podFalse, want: Sidecar},
		{name: "label false wins over annotation true", podLabels: podFalse, annotations: podTrue, want: None},
		{name: "unknown pod value opts out", nsLabels: enabled, podLabels: map[string]string{KeyInject: "maybe"}, want: None},
		{name: "yes and on count as true", podLabels: map[string]string{KeyInject: "Yes"}, want: Sidecar},
		{name: "empty pod value uses namespace", nsLabels: enabled, podLabels: map[string]string{KeyInject: ""}, want: Sidecar},
		{name: "hostNetwork never", nsLabels: enabled, hostNetwork: true, want: None},
		{name: "kube-system never", namespace: "kube-system", nsLabels: enabled, podLabels: podTrue, want: None},
		{name: "gateway template with pod label", podLabels: podTrue, annotations: gateway, want: Gateway},
		{name: "gateway template in enabled namespace", nsLabels: enabled, annotations: gateway, want: Gateway},
		{name: "gateway template among others", nsLabels: enabled, annotations: map[string]string{AnnotationTemplates: "sidecar, gateway"}, want: Gateway},
		{name: "gateway template but not injected", annotations: gateway, want: None},
		{name: "gateway template opted out", nsLabels: enabled, podLabels: podFalse, annotations: gateway, want: None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.namespace
			if ns == "" {
				ns = "default"
			}
			got := ModeFor(Decision{
				Namespace: ns, NamespaceLabels: tt.nsLabels, PodLabels: tt.podLabels,
				PodAnnotations: tt.annotations, HostNetwork: tt.hostNetwork,
			})
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
