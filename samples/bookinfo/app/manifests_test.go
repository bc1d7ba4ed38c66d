package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// sampleDir is samples/bookinfo, seen from this package's directory.
const sampleDir = ".."

// manifestDoc is one YAML document of the sample, with where it came from.
type manifestDoc struct {
	where string // file:document-number
	raw   []byte
	obj   map[string]any
}

func (d manifestDoc) str(path ...string) string {
	var v any = d.obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// loadManifests reads every YAML document under samples/bookinfo.
func loadManifests(t *testing.T) []manifestDoc {
	t.Helper()
	var docs []manifestDoc
	err := filepath.WalkDir(sampleDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, raw := range splitYAML(data) {
			where := fmt.Sprintf("%s#%d", path, i+1)
			var obj map[string]any
			if err := yaml.Unmarshal(raw, &obj); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if obj == nil {
				t.Errorf("%s: empty document", where)
				continue
			}
			docs = append(docs, manifestDoc{where: where, raw: raw, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no YAML documents found")
	}
	return docs
}

// splitYAML cuts a multi-document stream at its "---" lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if strings.TrimSpace(stripComments(cur.String())) != "" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " \t") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	flush()
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestManifestsAreWellFormed(t *testing.T) {
	for _, d := range loadManifests(t) {
		for _, field := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
			if d.str(field...) == "" {
				t.Errorf("%s: %s is missing", d.where, strings.Join(field, "."))
			}
		}
		if d.str("kind") != "Namespace" && d.str("metadata", "namespace") != "bookinfo" {
			t.Errorf("%s: %s %s has namespace %q, want bookinfo", d.where, d.str("kind"), d.str("metadata", "name"), d.str("metadata", "namespace"))
		}
	}
}

// TestLocalRunnerSeesOnlyTheApp guards the runner's rule: `skein up -f
// samples/bookinfo` reads the *.yaml files directly in that directory, which
// must be the application and its ingress Gateway (so the README's first
// command serves /productpage); routing rules live in networking/.
func TestLocalRunnerSeesOnlyTheApp(t *testing.T) {
	top, err := filepath.Glob(filepath.Join(sampleDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(sampleDir, "bookinfo-gateway.yaml"), filepath.Join(sampleDir, "bookinfo.yaml")}; !slices.Equal(top, want) {
		t.Errorf("top-level YAML files %v, want %v", top, want)
	}
}

// decodeStrict decodes a document into a typed object, failing on any
// field the type does not have (a typo would otherwise be dropped).
func decodeStrict(t *testing.T, d manifestDoc, into any) bool {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.raw, into); err != nil {
		t.Errorf("%s: %v", d.where, err)
		return false
	}
	return true
}

// decodeIstioSpec decodes spec into an istio.io/api message, strictly.
func decodeIstioSpec(t *testing.T, d manifestDoc, into proto.Message) bool {
	t.Helper()
	spec, err := yaml.Marshal(d.obj["spec"])
	if err == nil {
		var js []byte
		if js, err = yaml.YAMLToJSON(spec); err == nil {
			err = protojson.Unmarshal(js, into)
		}
	}
	if err != nil {
		t.Errorf("%s: spec: %v", d.where, err)
		return false
	}
	return true
}

// TestManifestsFitTogether decodes every object into its real type and
// checks the references between them: Deployments run a known service with
// the right reviews behaviour, every Service selects a Deployment, and
// every route names an existing host and subset.
func TestManifestsFitTogether(t *testing.T) {
	services := map[string]*corev1.Service{}
	accounts := map[string]bool{}
	deployments := map[string]*appsv1.Deployment{}
	subsets := map[string][]string{} // host → subset names
	var routes []struct {
		where string
		dest  *networking.Destination
	}
	var gateways []string

	for _, d := range loadManifests(t) {
		switch d.str("kind") {
		case "Namespace":
			var ns corev1.Namespace
			if decodeStrict(t, d, &ns) && ns.Labels["istio-injection"] != "enabled" {
				t.Errorf("%s: namespace lacks istio-injection: enabled", d.where)
			}
		case "Service":
			var s corev1.Service
			if decodeStrict(t, d, &s) {
				services[s.Name] = &s
			}
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			if decodeStrict(t, d, &sa) {
				accounts[sa.Name] = true
			}
		case "Deployment":
			var dep appsv1.Deployment
			if decodeStrict(t, d, &dep) {
				deployments[dep.Name] = &dep
			}
		case "DestinationRule":
			var dr networking.DestinationRule
			if decodeIstioSpec(t, d, &dr) {
				for _, s := range dr.GetSubsets() {
					subsets[dr.GetHost()] = append(subsets[dr.GetHost()], s.GetName())
				}
			}
		case "VirtualService":
			var vs networking.VirtualService
			if decodeIstioSpec(t, d, &vs) {
				for _, h := range vs.GetHttp() {
					for _, r := range h.GetRoute() {
						routes = append(routes, struct {
							where string
							dest  *networking.Destination
						}{d.where, r.GetDestination()})
					}
				}
			}
		case "Gateway":
			var gw networking.Gateway
			if decodeIstioSpec(t, d, &gw) {
				gateways = append(gateways, d.str("metadata", "name"))
			}
		default:
			t.Errorf("%s: unexpected kind %q", d.where, d.str("kind"))
		}
	}

	for _, name := range Services {
		s := services[name]
		if s == nil {
			t.Errorf("no Service %s", name)
			continue
		}
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 9080 || s.Spec.Ports[0].Name != "http" {
			t.Errorf("Service %s ports %+v, want one port 9080 named http", name, s.Spec.Ports)
		}
		if s.Spec.Selector["app"] != name || s.Labels["app"] != name || s.Labels["service"] != name {
			t.Errorf("Service %s: selector %v labels %v, want app=%s (and service label)", name, s.Spec.Selector, s.Labels, name)
		}
		if !accounts["bookinfo-"+name] {
			t.Errorf("no ServiceAccount bookinfo-%s", name)
		}
	}

	wantReviews := map[string]ReviewsConfig{
		"reviews-v1": {Version: "v1"},
		"reviews-v2": {Version: "v2", RatingsEnabled: true, StarColor: "black"},
		"reviews-v3": {Version: "v3", RatingsEnabled: true, StarColor: "red"},
	}
	wantDeployments := []string{"details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"}
	if got := slices.Sorted(maps.Keys(deployments)); !slices.Equal(got, wantDeployments) {
		t.Errorf("Deployments %v, want %v", got, wantDeployments)
	}
	for name, dep := range deployments {
		labels := dep.Spec.Template.Labels
		app, version := labels["app"], labels["version"]
		if name != app+"-"+version || dep.Labels["app"] != app || dep.Labels["version"] != version {
			t.Errorf("Deployment %s: labels %v / template %v do not match its name", name, dep.Labels, labels)
		}
		for k, v := range dep.Spec.Selector.MatchLabels {
			if labels[k] != v {
				t.Errorf("Deployment %s: selector %s=%s does not match its pods", name, k, v)
			}
		}
		if dep.Spec.Template.Spec.ServiceAccountName != "bookinfo-"+app {
			t.Errorf("Deployment %s: serviceAccountName %q", name, dep.Spec.Template.Spec.ServiceAccountName)
		}
		cs := dep.Spec.Template.Spec.Containers
		if len(cs) != 1 {
			t.Errorf("Deployment %s: %d containers, want 1", name, len(cs))
			continue
		}
		c := cs[0]
		if c.Image != "skein/bookinfo:latest" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("Deployment %s: image %s pull %s", name, c.Image, c.ImagePullPolicy)
		}
		if !slices.Equal(c.Command, []string{"bookinfo", app}) || !slices.Contains(Services, app) {
			t.Errorf("Deployment %s: command %q, want [bookinfo %s]", name, c.Command, app)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9080 {
			t.Errorf("Deployment %s: ports %+v, want containerPort 9080", name, c.Ports)
		}
		if want, ok := wantReviews[name]; ok {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			got := ReviewsConfigFromEnv(func(k string) string { return env[k] })
			got.PodName, got.Ratings = "", ""
			if got != want {
				t.Errorf("Deployment %s behaves as %+v, want %+v", name, got, want)
			}
		}
	}

	for _, r := range routes {
		host := r.dest.GetHost()
		if services[host] == nil {
			t.Errorf("%s: route to unknown host %q", r.where, host)
		}
		if s := r.dest.GetSubset(); s != "" && !slices.Contains(subsets[host], s) {
			t.Errorf("%s: route to subset %s/%s, which destination-rule-all.yaml does not define", r.where, host, s)
		}
	}
	if !slices.Contains(gateways, "bookinfo-gateway") {
		t.Error("no Gateway bookinfo-gateway")
	}
	if len(routes) == 0 {
		t.Error("no VirtualService routes found")
	}
}
