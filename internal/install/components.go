package install

import (
	"encoding/json"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/inject"
)

// injectorConfigMap is Istio's istio-sidecar-injector ConfigMap: the
// injection policy and selectors (values.global.proxy.autoInject,
// values.sidecarInjectorWebhook.*) under `config`, and the values tree
// under `values`, which the webhook reads for every pod — so
// values.global.proxy.resources reach injected proxies.
func (o *Options) injectorConfigMap() (*corev1.ConfigMap, error) {
	h := o.Values.Helm
	policy := inject.PolicyEnabled
	if getString(h, "global.proxy.autoInject") == inject.PolicyDisabled {
		policy = inject.PolicyDisabled
	}
	cfg := map[string]any{
		"policy":               policy,
		"alwaysInjectSelector": orEmptyList(get(h, "sidecarInjectorWebhook.alwaysInjectSelector")),
		"neverInjectSelector":  orEmptyList(get(h, "sidecarInjectorWebhook.neverInjectSelector")),
		"injectedAnnotations":  orEmptyMap(get(h, "sidecarInjectorWebhook.injectedAnnotations")),
	}
	if t := getMap(h, "sidecarInjectorWebhook.templates"); t != nil {
		cfg["templates"] = t
	}
	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	values := map[string]any{}
	mergeMaps(values, h)
	global, _ := values["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		values["global"] = global
	}
	proxy, _ := global["proxy"].(map[string]any)
	if proxy == nil {
		proxy = map[string]any{}
		global["proxy"] = proxy
	}
	if _, ok := proxy["image"]; !ok {
		proxy["image"] = o.image()
	}
	valuesJSON, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	// The config must compile: refuse at install time what the webhook
	// would refuse for every pod.
	if _, err := inject.ParseConfig(cfgYAML, valuesJSON); err != nil {
		return nil, err
	}
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: inject.InjectorConfigMap, Namespace: SystemNamespace,
			Labels: map[string]string{"istio.io/rev": o.revision(), labelManagedBy: managedBySkein}},
		Data: map[string]string{"config": string(cfgYAML), "values": string(valuesJSON)},
	}, nil
}

func orEmptyList(v any) any {
	if v == nil {
		return []any{}
	}
	return v
}

func orEmptyMap(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

// applyK8s puts a component's Kubernetes settings on its Deployment (the
// named container) and Service, and returns its HorizontalPodAutoscaler
// when autoscaling is asked for.
func applyK8s(s K8sSettings, dep *appsv1.Deployment, container string, svc *corev1.Service) (map[string]any, error) {
	if s.Replicas != nil {
		r := *s.Replicas
		dep.Spec.Replicas = &r
	}
	tmpl := &dep.Spec.Template
	for k, v := range s.PodAnnotations {
		if tmpl.Annotations == nil {
			tmpl.Annotations = map[string]string{}
		}
		tmpl.Annotations[k] = v
	}
	for i := range tmpl.Spec.Containers {
		c := &tmpl.Spec.Containers[i]
		if c.Name != container {
			continue
		}
		if s.Resources != nil {
			c.Resources = *s.Resources.DeepCopy()
		}
		names := make([]string, 0, len(s.Env))
		for k := range s.Env {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			c.Env = setEnv(c.Env, k, s.Env[k])
		}
	}
	if svc != nil {
		if s.ServiceType != "" {
			svc.Spec.Type = s.ServiceType
		}
		if len(s.ServicePorts) > 0 {
			svc.Spec.Ports = s.ServicePorts
		}
	}
	if s.HPA == nil {
		return nil, nil
	}
	spec := map[string]any{}
	mergeMaps(spec, s.HPA)
	spec["scaleTargetRef"] = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": dep.Name}
	if _, ok := spec["maxReplicas"]; !ok {
		return nil, fmt.Errorf("%s hpaSpec: maxReplicas is required", dep.Name)
	}
	return map[string]any{
		"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
		"metadata": map[string]any{"name": dep.Name, "namespace": dep.Namespace, "labels": stringMapAny(dep.Labels)},
		"spec":     spec,
	}, nil
}

func setEnv(env []corev1.EnvVar, name, value string) []corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			env[i] = corev1.EnvVar{Name: name, Value: value}
			return env
		}
	}
	return append(env, corev1.EnvVar{Name: name, Value: value})
}

func stringMapAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
