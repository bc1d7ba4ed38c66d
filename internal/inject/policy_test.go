package local

import "testing"

func TestProxyModeFor(t *testing.T) {
	enabled := map[string]string{labelNamespaceInjection: "enabled"}
	disabled := map[string]string{labelNamespaceInjection: "disabled"}
	revision := map[string]string{labelRevision: "default"}
	podTrue := map[string]string{keySidecarInject: "true"}
	podFalse := map[string]string{keySidecarInject: "false"}
	gateway := map[string]string{annotationTemplates: "gateway"}
	tests := []struct {
		name        string
		namespace   string
		nsLabels    map[string]string
		podLabels   map[string]string
		annotations map[string]string
		hostNetwork bool
		want        proxyMode
	}{
		{name: "no labels anywhere", want: noProxy},
		{name: "namespace enabled", nsLabels: enabled, want: sidecarProxy},
		{name: "namespace revision", nsLabels: revision, want: sidecarProxy},
		{name: "pod revision label", podLabels: revision, want: sidecarProxy},
		{name: "namespace disabled", nsLabels: disabled, want: noProxy},
		{name: "namespace other value", nsLabels: map[string]string{labelNamespaceInjection: "yes"}, want: noProxy},
		{name: "pod label true without namespace label", podLabels: podTrue, want: sidecarProxy},
		{name: "pod annotation true without namespace label", annotations: podTrue, want: sidecarProxy},
		{name: "pod label false in enabled namespace", nsLabels: enabled, podLabels: podFalse, want: noProxy},
		{name: "pod annotation false in enabled namespace", nsLabels: enabled, annotations: podFalse, want: noProxy},
		{name: "pod label true in disabled namespace", nsLabels: disabled, podLabels: podTrue, want: noProxy},
		{name: "label wins over annotation", nsLabels: enabled, podLabels: podTrue, annotations: podFalse, want: sidecarProxy},
		{name: "label false wins over annotation true", podLabels: podFalse, annotations: podTrue, want: noProxy},
		{name: "unknown pod value opts out", nsLabels: enabled, podLabels: map[string]string{keySidecarInject: "maybe"}, want: noProxy},
		{name: "yes and on count as true", podLabels: map[string]string{keySidecarInject: "Yes"}, want: sidecarProxy},
		{name: "empty pod value uses namespace", nsLabels: enabled, podLabels: map[string]string{keySidecarInject: ""}, want: sidecarProxy},
		{name: "hostNetwork never", nsLabels: enabled, hostNetwork: true, want: noProxy},
		{name: "kube-system never", namespace: "kube-system", nsLabels: enabled, podLabels: podTrue, want: noProxy},
		{name: "gateway template with pod label", podLabels: podTrue, annotations: gateway, want: gatewayProxy},
		{name: "gateway template in enabled namespace", nsLabels: enabled, annotations: gateway, want: gatewayProxy},
		{name: "gateway template among others", nsLabels: enabled, annotations: map[string]string{annotationTemplates: "sidecar, gateway"}, want: gatewayProxy},
		{name: "gateway template but not injected", annotations: gateway, want: noProxy},
		{name: "gateway template opted out", nsLabels: enabled, podLabels: podFalse, annotations: gateway, want: noProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.namespace
			if ns == "" {
				ns = "default"
			}
			got := proxyModeFor(injectionDecision{
				Namespace: ns, NamespaceLabels: tt.nsLabels, PodLabels: tt.podLabels,
				PodAnnotations: tt.annotations, HostNetwork: tt.hostNetwork,
			})
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
