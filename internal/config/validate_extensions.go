package config

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// Istio's rules for Telemetry, WasmPlugin, TrafficExtension, ProxyConfig
// and WorkloadGroup: the CRD schemas' constraints and CEL rules and the
// webhook's checks, with Istio's messages.

func (v *validator) telemetry(t *telemetry.Telemetry) {
	v.oneSelector("spec", t.GetSelector(), t.GetTargetRef(), t.GetTargetRefs(), "selector")
	v.workloadSelector("spec.selector", t.GetSelector())
	v.targetRefs("spec", t.GetTargetRef(), t.GetTargetRefs())
	providers := func(f string, refs []*telemetry.ProviderRef) {
		for i, p := range refs {
			if p.GetName() == "" {
				v.errorf(fieldAt(f, i)+".name", "name in body should be at least 1 chars long")
			}
		}
	}
	for i, m := range t.GetMetrics() {
		f := fieldAt("spec.metrics", i)
		providers(f+".providers", m.GetProviders())
		for j, o := range m.GetOverrides() {
			of := fieldAt(f+".overrides", j)
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				v.errorf(of+".match.customMetric", "customMetric in body should be at least 1 chars long")
			}
			for _, tag := range slices.Sorted(maps.Keys(o.GetTagOverrides())) {
				to := o.GetTagOverrides()[tag]
				tf := fmt.Sprintf("%s.tagOverrides[%s]", of, tag)
				switch to.GetOperation() {
				case telemetry.MetricsOverrides_TagOverride_UPSERT:
					if to.GetValue() == "" {
						v.errorf(tf, "value must be set when operation is UPSERT")
					}
				case telemetry.MetricsOverrides_TagOverride_REMOVE:
					if to.GetValue() != "" {
						v.errorf(tf, "value must not be set when operation is REMOVE")
					}
				}
			}
		}
	}
	for i, tr := range t.GetTracing() {
		f := fieldAt("spec.tracing", i)
		providers(f+".providers", tr.GetProviders())
		if p := tr.GetRandomSamplingPercentage(); p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
			v.errorf(f+".randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]")
		}
	}
	for i, al := range t.GetAccessLogging() {
		providers(fieldAt("spec.accessLogging", i)+".providers", al.GetProviders())
	}
}

var sha256RE = regexp.MustCompile(`^(|[a-f0-9]{64})$`)

func (v *validator) wasmPlugin(w *extensions.WasmPlugin) {
	v.oneSelector("spec", w.GetSelector(), w.GetTargetRef(), w.GetTargetRefs(), "selector")
	v.workloadSelector("spec.selector", w.GetSelector())
	v.targetRefs("spec", w.GetTargetRef(), w.GetTargetRefs())
	switch u := w.GetUrl(); {
	case u == "":
		v.errorf("spec.url", "spec.url in body should be at least 1 chars long")
	default:
		// No scheme means an OCI image reference.
		if pu, err := url.Parse(u); err != nil {
			v.errorf("spec.url", "url must have schema one of [http, https, file, oci]: %v", err)
		} else if pu.Scheme != "" && !contains([]string{"http", "https", "file", "oci"}, pu.Scheme) {
			v.errorf("spec.url", "url must have schema one of [http, https, file, oci] (got %q)", pu.Scheme)
		}
	}
	if !sha256RE.MatchString(w.GetSha256()) {
		v.errorf("spec.sha256", "spec.sha256 in body should match '^(|[a-f0-9]{64})$'")
	}
	names := map[string]bool{}
	for i, e := range w.GetVmConfig().GetEnv() {
		f := fieldAt("spec.vmConfig.env", i)
		switch {
		case e.GetName() == "":
			v.errorf(f+".name", "spec.vmConfig.env[%d].name in body should be at least 1 chars long", i)
		case names[e.GetName()]:
			v.errorf(f+".name", "Duplicate value: %q", e.GetName())
		}
		names[e.GetName()] = true
		if e.GetValueFrom() != extensions.EnvValueSource_INLINE && e.GetValue() != "" {
			v.errorf(f+".value", "value may only be set when valueFrom is INLINE")
		}
	}
	for i, m := range w.GetMatch() {
		for j, p := range m.GetPorts() {
			pf := fmt.Sprintf("spec.match[%d].ports[%d].number", i, j)
			if p.GetNumber() == 0 {
				v.errorf(pf, "Required value")
			} else if p.GetNumber() > 65535 {
				v.errorf(pf, "port must be between 1-65535")
			}
		}
	}
}

func (v *validator) trafficExtension(t *extensions.TrafficExtension) {
	if t.GetSelector() != nil && len(t.GetTargetRefs()) > 0 {
		v.errorf("spec", "only one of targetRefs or selector can be set")
	}
	v.workloadSelector("spec.selector", t.GetSelector())
	v.targetRefs("spec", nil, t.GetTargetRefs())
}

func (v *validator) proxyConfig(pc *networkingv1beta1.ProxyConfig) {
	v.workloadSelector("spec.selector", pc.GetSelector())
	if c := pc.GetConcurrency(); c != nil && c.GetValue() < 0 {
		v.errorf("spec.concurrency", "spec.concurrency in body should be greater than or equal to 0")
	}
}

func (v *validator) workloadGroup(wg *networking.WorkloadGroup) {
	v.labels("spec.metadata.labels", wg.GetMetadata().GetLabels())
	if t := wg.GetTemplate(); t != nil {
		for _, name := range slices.Sorted(maps.Keys(t.GetPorts())) {
			if p := t.GetPorts()[name]; p < 1 || p > 65535 {
				v.errorf(fmt.Sprintf("spec.template.ports[%s]", name), "port must be between 1-65535")
			}
		}
		v.labels("spec.template.labels", t.GetLabels())
	}
	p := wg.GetProbe()
	if p == nil {
		return
	}
	checkPort := func(f string, port uint32) {
		if port < 1 || port > 65535 {
			v.errorf(f, "port must be between 1-65535")
		}
	}
	switch {
	case p.GetHttpGet() != nil:
		h := p.GetHttpGet()
		checkPort("spec.probe.httpGet.port", h.GetPort())
		for i, hd := range h.GetHttpHeaders() {
			if !headerNameRE.MatchString(hd.GetName()) {
				v.errorf(fmt.Sprintf("spec.probe.httpGet.httpHeaders[%d].name", i), "spec.probe.httpGet.httpHeaders[%d].name in body should match '^[-_A-Za-z0-9]+$'", i)
			}
		}
	case p.GetTcpSocket() != nil:
		checkPort("spec.probe.tcpSocket.port", p.GetTcpSocket().GetPort())
	case p.GetGrpc() != nil:
		checkPort("spec.probe.grpc.port", p.GetGrpc().GetPort())
	case p.GetExec() != nil:
		if len(p.GetExec().GetCommand()) == 0 {
			v.errorf("spec.probe.exec.command", "exec.command is required")
		}
	}
}
