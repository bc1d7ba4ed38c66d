package install

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/inject"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testBundle = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

func TestGoldenManifests(t *testing.T) {
	tests := []struct {
		name string
		sets []string
		opts Options
	}{
		{name: "default", sets: []string{"values.defaultRevision=default"}},
		{name: "tutorial", sets: tutorialSets},
		{name: "components", sets: []string{"profile=minimal", "components.pilot.k8s.resources.requests.cpu=250m", "components.pilot.k8s.hpaSpec.maxReplicas=3",
			"values.pilot.env.PILOT_TRACE_SAMPLING=10", "components.ingressGateways[0].enabled=true", "components.ingressGateways[0].k8s.service.type=NodePort",
			"values.gateways.istio-ingressgateway.resources.limits.memory=256Mi", "values.global.proxy.autoInject=disabled",
			"values.sidecarInjectorWebhook.neverInjectSelector[0].matchLabels.tier=batch"}},
		{name: "external", sets: []string{"profile=demo", "meshConfig.accessLogFile=/dev/stdout", "meshConfig.defaultConfig.holdApplicationUntilProxyStarts=true"},
			opts: Options{ExternalDiscovery: "10.1.2.3:15010"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, err := ParseSet(tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			o := tt.opts
			o.Values, o.CABundle = vals, []byte(testBundle)
			o.CACerts = map[string][]byte{"ca-key.pem": []byte("CA-KEY-MATERIAL")}
			o.AdminCredential = []byte("ADMIN-CREDENTIAL")
			objs, err := Objects(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got, []byte("CA-KEY-MATERIAL")) || bytes.Contains(got, []byte("ADMIN-CREDENTIAL")) || bytes.Contains(got, []byte("kind: Secret")) {
				t.Error("manifest prints the CA key or the admin credential")
			}
			// ... but install applies the credential's Secret, for the
			// dashboard addon (and istiod in the cluster) to use.
			sec := find(objs, "Secret", AdminCredentialSecret)
			if sec == nil {
				t.Fatalf("no %s Secret among the objects install applies", AdminCredentialSecret)
			}
			if data, _, _ := unstructured.NestedString(sec.Object, "data", "admin-token"); data != "QURNSU4tQ1JFREVOVElBTA==" {
				t.Errorf("%s data admin-token = %q", AdminCredentialSecret, data)
			}
			golden := filepath.Join("testdata", tt.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./internal/install -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("manifest differs from %s (go test ./internal/install -update to accept)", golden)
			}
		})
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

func TestManifestContents(t *testing.T) {
	objs, err := Objects(Options{CABundle: []byte(testBundle), CACerts: map[string][]byte{"ca-cert.pem": []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	crd := find(objs, "CustomResourceDefinition", "virtualservices.networking.istio.io")
	if crd == nil {
		t.Fatal("no VirtualService CRD")
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var stored []string
	var served int
	for _, v := range versions {
		m := v.(map[string]any)
		if m["storage"] == true {
			stored = append(stored, m["name"].(string))
		}
		if m["served"] == true {
			served++
		}
	}
	if len(stored) != 1 || stored[0] != "v1" || served != 3 {
		t.Errorf("VirtualService versions: stored %v, served %d", stored, served)
	}
	ef := find(objs, "CustomResourceDefinition", "envoyfilters.networking.istio.io")
	if v, _, _ := unstructured.NestedSlice(ef.Object, "spec", "versions"); len(v) != 1 || v[0].(map[string]any)["storage"] != true {
		t.Errorf("EnvoyFilter versions = %v", v)
	}
	short, _, _ := unstructured.NestedStringSlice(crd.Object, "spec", "names", "shortNames")
	cats, _, _ := unstructured.NestedStringSlice(crd.Object, "spec", "names", "categories")
	if strings.Join(short, ",") != "vs" || strings.Join(cats, ",") != "istio-io,networking-istio-io" {
		t.Errorf("names: short %v categories %v", short, cats)
	}
	if find(objs, "Deployment", "istiod") == nil || find(objs, "Secret", CACertsSecret) == nil {
		t.Error("in-cluster install lacks istiod or its cacerts")
	}
	wh := find(objs, "MutatingWebhookConfiguration", WebhookName)
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	for _, h := range hooks {
		svc, _, _ := unstructured.NestedMap(h.(map[string]any), "clientConfig", "service")
		if svc["name"] != "istiod" || svc["path"] != "/inject" || svc["port"] != int64(443) {
			t.Errorf("webhook service = %v", svc)
		}
	}
	gw := find(objs, "Deployment", IngressName)
	ann, _, _ := unstructured.NestedStringMap(gw.Object, "spec", "template", "metadata", "annotations")
	if !strings.Contains(ann[inject.AnnotationStatus], `"gateway"`) {
		t.Errorf("ingress gateway is not gateway-injected: %v", ann)
	}
	svc := find(objs, "Service", IngressName)
	if typ, _, _ := unstructured.NestedString(svc.Object, "spec", "type"); typ != "LoadBalancer" {
		t.Errorf("ingress Service type = %q", typ)
	}
}

func TestExternalDiscovery(t *testing.T) {
	objs, err := Objects(Options{CABundle: []byte(testBundle), ExternalDiscovery: "192.168.1.10:15010"})
	if err != nil {
		t.Fatal(err)
	}
	if find(objs, "Deployment", "istiod") != nil || find(objs, "Service", "istiod") != nil {
		t.Error("istiod installed in the cluster with --external-discovery")
	}
	wh := find(objs, "MutatingWebhookConfiguration", WebhookName)
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	url, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "url")
	if url != "https://192.168.1.10:15017/inject" {
		t.Errorf("webhook url = %q", url)
	}
	gw, _ := yaml.Marshal(find(objs, "Deployment", IngressName).Object)
	if !bytes.Contains(gw, []byte("192.168.1.10:15010")) {
		t.Error("gateway not pointed at the external control plane")
	}
}

func TestParseSet(t *testing.T) {
	tests := []struct {
		sets    []string
		wantErr string
		check   func(Values) bool
	}{
		{sets: []string{"values.defaultRevision=default"}, check: func(v Values) bool { return v.Revision == "default" && !v.Egress && !v.NoIngress }},
		{sets: []string{"profile=demo"}, check: func(v Values) bool { return v.Egress }},
		{sets: []string{"profile=minimal"}, check: func(v Values) bool { return v.NoIngress }},
		{sets: []string{"profile=demo", "components.egressGateways[0].enabled=false"}, check: func(v Values) bool { return !v.Egress }},
		{sets: []string{"meshConfig.enableTracing=false", "meshConfig.defaultConfig.concurrency=2"}, check: func(v Values) bool {
			dc, _ := v.MeshConfig["defaultConfig"].(map[string]any)
			return v.MeshConfig["enableTracing"] == false && dc["concurrency"] == float64(2)
		}},
		{sets: []string{"profile=ambient"}, wantErr: "ambient mode"},
		{sets: []string{"profile=sometimes"}, wantErr: "unknown profile"},
		{sets: []string{"values.pilot.env.FOO=1"}, check: func(v Values) bool { return v.Pilot.Env["FOO"] == "1" }},
		{sets: []string{"values.pilot.bogus=1"}, wantErr: "values.pilot.bogus: not a setting Skein knows; did you mean values.pilot.env?"},
		{sets: []string{"values.global.proxy.resource.requests.cpu=1"}, wantErr: "did you mean values.global.proxy.resources?"},
		{sets: []string{"meshConfig.defaultConfig.proxyStatsMatcher.inclusionRegexps[0]=.*circuit_breakers.*", "meshConfig.defaultConfig.proxyStatsMatcher.inclusionRegexps[1]=.*_cx_.*"},
			check: func(v Values) bool {
				l, _ := get(v.MeshConfig, "defaultConfig.proxyStatsMatcher.inclusionRegexps").([]any)
				return len(l) == 2 && l[0] == ".*circuit_breakers.*" && l[1] == ".*_cx_.*"
			}},
		{sets: []string{"components.ingressGateways[0].k8s.service.type=NodePort", "components.ingressGateways[0].k8s.replicaCount=3"},
			check: func(v Values) bool { return v.IngressK8s.ServiceType == "NodePort" && *v.IngressK8s.Replicas == 3 }},
		{sets: []string{"components.ingressGateways[0].k8s.service.type=Weird"}, wantErr: `service type "Weird"`},
		{sets: []string{"values.pilot.autoscaleEnabled=true", "values.pilot.autoscaleMax=7"},
			check: func(v Values) bool { return v.Pilot.HPA["maxReplicas"] == int32(7) }},
		{sets: []string{"values.pilot.resources.requests.cpu=lots"}, wantErr: "values resources of pilot"},
		{sets: []string{"components.pilot.enabled=false"}, check: func(v Values) bool { return v.NoPilot }},
		{sets: []string{"values.global.proxy.resources.requests.cpu=10m"}, check: func(v Values) bool {
			return getString(v.Helm, "global.proxy.resources.requests.cpu") == "10m"
		}},
		{sets: []string{"noequals"}, wantErr: "want key=value"},
		{sets: []string{"meshConfig.a=1", "meshConfig.a.b=2"}, wantErr: "already set"},
		{sets: []string{"components.ingressGateways[0].enabled=maybe"}, wantErr: "not true or false"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.sets, " "), func(t *testing.T) {
			v, err := ParseSet(tt.sets)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(v) {
				t.Fatalf("values %+v err %v", v, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{ExternalDiscovery: "nohost", CABundle: []byte(testBundle)},
		{},
	} {
		if _, err := Objects(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// tutorialSets is the tutorial's install line.
var tutorialSets = []string{
	"values.global.proxy.resources.requests.cpu=10m", "values.global.proxy.resources.requests.memory=40Mi",
	"values.global.proxy.resources.limits.cpu=100m", "values.global.proxy.resources.limits.memory=128Mi",
}

// The tutorial's --set values reach injected pods: the generated injector
// ConfigMap, read as the webhook reads it, gives istio-proxy the requests
// and limits asked for.
func TestTutorialProxyResourcesReachInjectedPods(t *testing.T) {
	vals, err := ParseSet(tutorialSets)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(Options{Values: vals, CABundle: []byte(testBundle)})
	if err != nil {
		t.Fatal(err)
	}
	cm := find(objs, "ConfigMap", inject.InjectorConfigMap)
	if cm == nil {
		t.Fatal("no istio-sidecar-injector ConfigMap")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	cfg, err := inject.ParseConfigMap(data)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example/web"}}}}
	if _, err := inject.Pod(pod, map[string]string{inject.LabelNamespaceInjection: "enabled"}, inject.Params{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	var r corev1.ResourceRequirements
	for _, c := range pod.Spec.Containers {
		if c.Name == inject.ProxyContainerName {
			r = c.Resources
		}
	}
	if r.Requests.Cpu().String() != "10m" || r.Requests.Memory().String() != "40Mi" || r.Limits.Cpu().String() != "100m" || r.Limits.Memory().String() != "128Mi" {
		t.Errorf("istio-proxy resources %v", r)
	}
}

func TestIstiodResourcesAndFiles(t *testing.T) {
	dir := t.TempDir()
	iop := filepath.Join(dir, "iop.yaml")
	os.WriteFile(iop, []byte(`apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  profile: demo
  components:
    pilot:
      k8s:
        resources:
          requests: {cpu: 500m, memory: 2Gi}
        replicaCount: 2
  values:
    global:
      proxy:
        logLevel: debug
`), 0o644)
	tmpl := filepath.Join(dir, "tmpl.yaml")
	os.WriteFile(tmpl, []byte("spec:\n  containers:\n  - name: istio-proxy\n    env: [{name: X, value: \"1\"}]\n"), 0o644)
	vals, err := Parse(Sources{Files: []string{iop}, Sets: []string{"components.pilot.k8s.replicaCount=3"}, SetFiles: []string{"values.sidecarInjectorWebhook.templates.extra=" + tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	if !vals.Egress || vals.ProxyLogLevel != "debug" || *vals.Pilot.Replicas != 3 {
		t.Errorf("values %+v", vals)
	}
	objs, err := Objects(Options{Values: vals, CABundle: []byte(testBundle)})
	if err != nil {
		t.Fatal(err)
	}
	dep := find(objs, "Deployment", IstiodName)
	b, _ := yaml.Marshal(dep.Object)
	for _, want := range []string{"cpu: 500m", "memory: 2Gi", "replicas: 3"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("istiod lacks %q", want)
		}
	}
	cm := find(objs, "ConfigMap", inject.InjectorConfigMap)
	cfgText, _, _ := unstructured.NestedString(cm.Object, "data", "config")
	if !strings.Contains(cfgText, "extra:") {
		t.Errorf("template from --set-file missing: %s", cfgText)
	}
	if _, err := Parse(Sources{Files: []string{tmpl}}); err == nil || !strings.Contains(err.Error(), "IstioOperator") {
		t.Errorf("non-IstioOperator file: %v", err)
	}
}
