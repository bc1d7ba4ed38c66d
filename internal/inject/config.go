package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// InjectorConfigMap is the ConfigMap (in the root namespace) that holds
// Istio's injector configuration: its "config" key (policy, selectors,
// templates) and its "values" key (the install's Helm values as JSON).
const InjectorConfigMap = "istio-sidecar-injector"

// Injection policies of the config's `policy`.
const (
	PolicyEnabled  = "enabled"
	PolicyDisabled = "disabled"
)

// Config is Istio's injector configuration, compiled once when the
// ConfigMap (or kube-inject's --injectConfigFile/--valuesFile) is read.
type Config struct {
	// Policy is "enabled" (pods in injection-enabled namespaces get a
	// proxy unless they opt out) or "disabled" (only pods that opt in or
	// match AlwaysInjectSelector).
	Policy string
	// NeverInjectSelector and AlwaysInjectSelector decide pods without an
	// explicit sidecar.istio.io/inject, never first.
	NeverInjectSelector  []labels.Selector
	AlwaysInjectSelector []labels.Selector
	// InjectedAnnotations are added to every injected pod.
	InjectedAnnotations map[string]string
	// templates are pod overlays by template name ("sidecar" for the
	// config's single `template`), rendered with the pod and the values and
	// merged over Skein's injection (containers by name).
	templates map[string]*template.Template
	// Values is the install's values tree ("global.proxy.resources", ...).
	Values map[string]any
	// Proxy is what Values say about the proxy container.
	Proxy ProxyValues
}

// ProxyValues are the values.global.proxy.* settings the injection honours.
type ProxyValues struct {
	Image                           string
	LogLevel                        string
	Resources                       *corev1.ResourceRequirements
	Privileged                      bool
	HoldApplicationUntilProxyStarts bool
}

// configDoc is the `config` key's YAML.
type configDoc struct {
	Policy               string                 `json:"policy"`
	AlwaysInjectSelector []metav1.LabelSelector `json:"alwaysInjectSelector"`
	NeverInjectSelector  []metav1.LabelSelector `json:"neverInjectSelector"`
	InjectedAnnotations  map[string]string      `json:"injectedAnnotations"`
	Template             string                 `json:"template"`
	Templates            map[string]string      `json:"templates"`
	DefaultTemplates     []string               `json:"defaultTemplates"`
}

// ParseConfigMap reads the istio-sidecar-injector ConfigMap's data.
func ParseConfigMap(data map[string]string) (*Config, error) {
	return ParseConfig([]byte(data["config"]), []byte(data["values"]))
}

// ParseConfig compiles the injector's `config` YAML and `values` JSON (or
// YAML); either may be empty. Errors name the key and field.
func ParseConfig(configYAML, values []byte) (*Config, error) {
	var doc configDoc
	if len(bytes.TrimSpace(configYAML)) > 0 {
		if err := yaml.UnmarshalStrict(configYAML, &doc); err != nil {
			return nil, fmt.Errorf("%s config: %v", InjectorConfigMap, err)
		}
	}
	c := &Config{Policy: PolicyEnabled, InjectedAnnotations: doc.InjectedAnnotations, templates: map[string]*template.Template{}, Values: map[string]any{}}
	switch strings.ToLower(doc.Policy) {
	case "", PolicyEnabled:
	case PolicyDisabled:
		c.Policy = PolicyDisabled
	default:
		return nil, fmt.Errorf("%s config: policy %q: want enabled or disabled", InjectorConfigMap, doc.Policy)
	}
	for i, sel := range doc.NeverInjectSelector {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return nil, fmt.Errorf("%s config: neverInjectSelector[%d]: %v", InjectorConfigMap, i, err)
		}
		c.NeverInjectSelector = append(c.NeverInjectSelector, s)
	}
	for i, sel := range doc.AlwaysInjectSelector {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return nil, fmt.Errorf("%s config: alwaysInjectSelector[%d]: %v", InjectorConfigMap, i, err)
		}
		c.AlwaysInjectSelector = append(c.AlwaysInjectSelector, s)
	}
	named := map[string]string{}
	for k, v := range doc.Templates {
		named[k] = v
	}
	if doc.Template != "" {
		named[SidecarTemplate] = doc.Template
	}
	for name, text := range named {
		t, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs).Parse(text)
		if err != nil {
			return nil, fmt.Errorf("%s config: template %q: %v", InjectorConfigMap, name, err)
		}
		c.templates[name] = t
	}
	if len(bytes.TrimSpace(values)) > 0 {
		if err := yaml.Unmarshal(values, &c.Values); err != nil {
			return nil, fmt.Errorf("%s values: %v", InjectorConfigMap, err)
		}
	}
	if err := c.Proxy.read(c.Values); err != nil {
		return nil, fmt.Errorf("%s values: %v", InjectorConfigMap, err)
	}
	return c, nil
}

// read takes the proxy settings out of a values tree.
func (p *ProxyValues) read(values map[string]any) error {
	global, _ := values["global"].(map[string]any)
	proxy, _ := global["proxy"].(map[string]any)
	if proxy == nil {
		return nil
	}
	if s, ok := proxy["image"].(string); ok && s != "" {
		p.Image = s
		if !strings.Contains(s, "/") && !strings.Contains(s, ":") { // Istio's short name ("proxyv2"): hub/name:tag
			hub, _ := global["hub"].(string)
			tag, _ := global["tag"].(string)
			if hub != "" && tag != "" {
				p.Image = hub + "/" + s + ":" + tag
			}
		}
	}
	p.LogLevel, _ = proxy["logLevel"].(string)
	p.Privileged, _ = proxy["privileged"].(bool)
	p.HoldApplicationUntilProxyStarts, _ = proxy["holdApplicationUntilProxyStarts"].(bool)
	if r, ok := proxy["resources"]; ok && r != nil {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		var rr corev1.ResourceRequirements
		if err := yaml.UnmarshalStrict(b, &rr); err != nil {
			return fmt.Errorf("global.proxy.resources: %v", err)
		}
		p.Resources = &rr
	}
	return nil
}

// templateFuncs are the helpers Istio's injection templates use most.
var templateFuncs = template.FuncMap{
	"toJSON": func(v any) string { b, _ := json.Marshal(v); return string(b) },
	"toYaml": func(v any) string { b, _ := yaml.Marshal(v); return strings.TrimSuffix(string(b), "\n") },
	"annotation": func(meta metav1.ObjectMeta, name string, def any) string {
		if v, ok := meta.Annotations[name]; ok {
			return v
		}
		return fmt.Sprint(def)
	},
	"isset": func(m map[string]string, k string) bool { _, ok := m[k]; return ok },
}

// required applies the config's policy and selectors to a pod the
// webhook's selectors already matched (Istio's injectRequired): an
// explicit sidecar.istio.io/inject wins, then neverInjectSelector, then
// alwaysInjectSelector, then the policy.
func (c *Config) required(podLabels map[string]string, explicit, explicitValue bool) bool {
	if c == nil {
		return true
	}
	if explicit {
		return explicitValue
	}
	set := labels.Set(podLabels)
	for _, s := range c.NeverInjectSelector {
		if s.Matches(set) {
			return false
		}
	}
	for _, s := range c.AlwaysInjectSelector {
		if s.Matches(set) {
			return true
		}
	}
	return c.Policy != PolicyDisabled
}

// templateData is what an injection template sees, as in Istio.
type templateData struct {
	ObjectMeta metav1.ObjectMeta
	Spec       corev1.PodSpec
	Values     map[string]any
	Revision   string
}

// overlay renders the templates the pod asks for (inject.istio.io/templates,
// or "sidecar"/"gateway" by mode) and merges each over t, containers by
// name, as Istio merges its rendered templates into the pod.
func (c *Config) overlay(t *corev1.PodTemplateSpec, mode Mode, original *corev1.PodTemplateSpec, revision string) error {
	if c == nil || len(c.templates) == 0 {
		return nil
	}
	names := []string{SidecarTemplate}
	if mode == Gateway {
		names = []string{GatewayTemplate}
	}
	if v := t.Annotations[AnnotationTemplates]; v != "" {
		names = nil
		for _, n := range strings.Split(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	}
	for _, name := range names {
		tmpl := c.templates[name]
		if tmpl == nil {
			continue
		}
		var out bytes.Buffer
		if err := tmpl.Execute(&out, templateData{ObjectMeta: original.ObjectMeta, Spec: original.Spec, Values: c.Values, Revision: revision}); err != nil {
			return fmt.Errorf("%s template %q: %v", InjectorConfigMap, name, err)
		}
		patch, err := yaml.YAMLToJSON(out.Bytes())
		if err != nil {
			return fmt.Errorf("%s template %q renders invalid YAML: %v", InjectorConfigMap, name, err)
		}
		if string(patch) == "null" {
			continue
		}
		cur, err := json.Marshal(t)
		if err != nil {
			return err
		}
		merged, err := strategicpatch.StrategicMergePatch(cur, patch, corev1.PodTemplateSpec{})
		if err != nil {
			return fmt.Errorf("%s template %q: %v", InjectorConfigMap, name, err)
		}
		var next corev1.PodTemplateSpec
		if err := json.Unmarshal(merged, &next); err != nil {
			return fmt.Errorf("%s template %q: %v", InjectorConfigMap, name, err)
		}
		*t = next
	}
	return nil
}
