package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// tutorialConfig is the tutorial's istio-sidecar-injector `config` key.
const tutorialConfig = `policy: enabled
alwaysInjectSelector: []
neverInjectSelector: []
template: |
  spec:
    containers:
    - name: istio-proxy
      resources:
        limits:
          cpu: "100m"
          memory: "128Mi"
        requests:
          cpu: "10m"
          memory: "40Mi"
`

func mustConfig(t *testing.T, cfg, values string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(cfg), []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func proxyOf(t *testing.T, pod *corev1.Pod) *corev1.Container {
	t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ProxyContainerName {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func resourcesString(c *corev1.Container) string {
	r := c.Resources
	return "requests cpu=" + r.Requests.Cpu().String() + " memory=" + r.Requests.Memory().String() +
		" limits cpu=" + r.Limits.Cpu().String() + " memory=" + r.Limits.Memory().String()
}

func TestInjectorConfig(t *testing.T) {
	enabled := map[string]string{LabelNamespaceInjection: "enabled"}
	const tutorialResources = "requests cpu=10m memory=40Mi limits cpu=100m memory=128Mi"
	cases := []struct {
		name      string
		config    string
		values    string
		labels    map[string]string
		annos     map[string]string
		nsLabels  map[string]string
		injected  bool
		resources string // of istio-proxy, when injected
		check     func(t *testing.T, pod *corev1.Pod)
	}{
		{name: "tutorial template sets proxy resources", config: tutorialConfig, nsLabels: enabled, injected: true, resources: tutorialResources},
		{name: "install values set proxy resources", nsLabels: enabled, injected: true, resources: tutorialResources,
			values: `{"global":{"proxy":{"resources":{"requests":{"cpu":"10m","memory":"40Mi"},"limits":{"cpu":"100m","memory":"128Mi"}}}}}`},
		{name: "template wins over values", config: tutorialConfig, nsLabels: enabled, injected: true, resources: tutorialResources,
			values: `{"global":{"proxy":{"resources":{"requests":{"cpu":"500m","memory":"1Gi"}}}}}`},
		{name: "annotations override values", nsLabels: enabled, injected: true, resources: "requests cpu=200m memory=40Mi limits cpu=1 memory=128Mi",
			values: `{"global":{"proxy":{"resources":{"requests":{"cpu":"10m","memory":"40Mi"},"limits":{"cpu":"100m","memory":"128Mi"}}}}}`,
			annos:  map[string]string{AnnotationProxyCPU: "200m", AnnotationProxyCPULimit: "1"}},
		{name: "policy disabled: enabled namespace not injected", config: "policy: disabled\n", nsLabels: enabled},
		{name: "policy disabled: pod opting in is injected", config: "policy: disabled\n", nsLabels: enabled, labels: map[string]string{KeyInject: "true"}, injected: true},
		{name: "policy disabled: alwaysInjectSelector", config: "policy: disabled\nalwaysInjectSelector:\n- matchLabels: {tier: web}\n",
			nsLabels: enabled, labels: map[string]string{"tier": "web"}, injected: true},
		{name: "neverInjectSelector", config: "policy: enabled\nneverInjectSelector:\n- matchExpressions: [{key: openshift.io/build.name, operator: Exists}]\n",
			nsLabels: enabled, labels: map[string]string{"openshift.io/build.name": "b1"}},
		{name: "explicit opt-in beats neverInjectSelector", config: "neverInjectSelector:\n- matchLabels: {tier: web}\n",
			nsLabels: enabled, labels: map[string]string{"tier": "web", KeyInject: "true"}, injected: true},
		{name: "selectors never bypass the namespace", config: "alwaysInjectSelector:\n- matchLabels: {tier: web}\n", labels: map[string]string{"tier": "web"}},
		{name: "injectedAnnotations", config: "injectedAnnotations: {example.com/injected: \"yes\"}\n", nsLabels: enabled, injected: true,
			check: func(t *testing.T, pod *corev1.Pod) {
				if pod.Annotations["example.com/injected"] != "yes" {
					t.Errorf("annotations %v", pod.Annotations)
				}
			}},
		{name: "values: image, privileged, hold application", nsLabels: enabled, injected: true,
			values: `{"global":{"hub":"example.io/mesh","tag":"1.2","proxy":{"image":"proxyv2","privileged":true,"holdApplicationUntilProxyStarts":true,"logLevel":"debug"}}}`,
			check: func(t *testing.T, pod *corev1.Pod) {
				p := &pod.Spec.Containers[0]
				if p.Name != ProxyContainerName {
					t.Fatalf("proxy not first: %s", p.Name)
				}
				if p.Image != "example.io/mesh/proxyv2:1.2" || p.SecurityContext == nil || !*p.SecurityContext.Privileged {
					t.Errorf("image %s, securityContext %v", p.Image, p.SecurityContext)
				}
				found := false
				for _, e := range p.Env {
					found = found || (e.Name == "SKEIN_LOG_LEVEL" && e.Value == "debug")
				}
				if !found {
					t.Error("log level not passed")
				}
			}},
		{name: "template sees the pod and the values", nsLabels: enabled, injected: true,
			values: `{"global":{"proxy":{"resources":{"limits":{"memory":"64Mi"}}}}}`,
			config: `template: |
  metadata:
    annotations:
      example.com/app: {{ index .ObjectMeta.Labels "app" }}
  spec:
    containers:
    - name: istio-proxy
      env:
      - name: EXTRA
        value: {{ .Revision }}
`,
			labels: map[string]string{"app": "web"},
			check: func(t *testing.T, pod *corev1.Pod) {
				if pod.Annotations["example.com/app"] != "web" {
					t.Errorf("annotations %v", pod.Annotations)
				}
				p := proxyOf(t, pod)
				found := false
				for _, e := range p.Env {
					found = found || (e.Name == "EXTRA" && e.Value == "default")
				}
				if !found || p.Resources.Limits.Memory().String() != "64Mi" || len(p.Args) == 0 {
					t.Errorf("merged proxy: env %v resources %v args %v", p.Env, p.Resources, p.Args)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: tc.labels, Annotations: tc.annos},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			}
			mode, err := Pod(pod, tc.nsLabels, Params{Config: mustConfig(t, tc.config, tc.values)})
			if err != nil {
				t.Fatal(err)
			}
			if (mode != None) != tc.injected {
				t.Fatalf("injected = %v, want %v", mode != None, tc.injected)
			}
			if !tc.injected {
				return
			}
			if tc.resources != "" {
				if got := resourcesString(proxyOf(t, pod)); got != tc.resources {
					t.Errorf("resources %s, want %s", got, tc.resources)
				}
			}
			if tc.check != nil {
				tc.check(t, pod)
			}
		})
	}
}

func TestInjectorConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, values, want string }{
		{"policy: sometimes\n", "", `policy "sometimes"`},
		{"neverInjectSelector:\n- matchExpressions: [{key: a, operator: Bogus}]\n", "", "neverInjectSelector[0]"},
		{"template: \"{{ .Nope\"\n", "", `template "sidecar"`},
		{"bogusKey: 1\n", "", "istio-sidecar-injector config"},
		{"", `{"global":{"proxy":{"resources":{"requests":{"cpu":"lots"}}}}}`, "global.proxy.resources"},
	} {
		if _, err := ParseConfig([]byte(tc.config), []byte(tc.values)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q: error %v, want %q", tc.config, tc.values, err, tc.want)
		}
	}
	// A template that renders a bad pod fails the injection, naming it.
	c := mustConfig(t, "template: |\n  spec:\n    containers: 5\n", "")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "a"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	if _, err := Pod(pod, map[string]string{LabelNamespaceInjection: "enabled"}, Params{Config: c}); err == nil || !strings.Contains(err.Error(), `template "sidecar"`) {
		t.Errorf("bad template: %v", err)
	}
}
