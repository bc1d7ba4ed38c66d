package install

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			objs, err := Objects(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got, []byte("CA-KEY-MATERIAL")) || bytes.Contains(got, []byte("kind: Secret")) {
				t.Error("manifest prints the CA key")
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
		{sets: []string{"profile=ambient"}, wantErr: "unknown profile"},
		{sets: []string{"values.pilot.env.FOO=1"}, wantErr: "values.pilot.env.FOO: not a setting"},
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
