package analyze

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// gridCase is one situation of Istio's analyzer test grid, in YAML of
// our own: the messages expected among the given codes, as
// "CODE Kind ns/name".
type gridCase struct {
	name  string
	codes []string
	yaml  string
	want  []string
}

func analyzeYAML(t *testing.T, docs string) []Message {
	t.Helper()
	in := NewInput()
	if errs := in.AddFile("input.yaml", []byte(docs), "default"); len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return Run(in, Options{})
}

func runGrid(t *testing.T, cases []gridCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs := analyzeYAML(t, tc.yaml)
			want := map[string]bool{}
			for _, c := range tc.codes {
				want[c] = true
			}
			var got []string
			for _, m := range msgs {
				if m.Type == SchemaValidationError && !want[m.Type.Code] {
					t.Fatalf("input does not validate: %s", m)
				}
				if want[m.Type.Code] {
					got = append(got, m.Type.Code+" "+m.Resource.FriendlyName())
				}
			}
			sort.Strings(got)
			exp := append([]string(nil), tc.want...)
			sort.Strings(exp)
			if strings.Join(got, "\n") != strings.Join(exp, "\n") {
				var all []string
				for _, m := range msgs {
					all = append(all, m.String())
				}
				t.Errorf("got:\n  %s\nwant:\n  %s\nall messages:\n  %s", strings.Join(got, "\n  "), strings.Join(exp, "\n  "), strings.Join(all, "\n  "))
			}
		})
	}
}

// TestBookinfoOffline is the tutorial's Bookinfo with its gateway and
// routing, analysed from files alone: no errors.
func TestBookinfoOffline(t *testing.T) {
	root := filepath.Join("..", "..", "samples", "bookinfo")
	in := NewInput()
	in.AddDefaults("istio-system")
	for _, f := range []string{"platform/kube/bookinfo.yaml", "bookinfo-gateway.yaml", "networking/destination-rule-all.yaml", "networking/virtual-service-all-v1.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if errs := in.AddFile(f, data, "default"); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	if in.Len() < 20 {
		t.Fatalf("only %d objects read", in.Len())
	}
	for _, m := range Run(in, Options{}) {
		if m.Type.Level == Error {
			t.Errorf("unexpected error: %s", m)
		}
	}
}

func TestMessageFormat(t *testing.T) {
	msgs := analyzeYAML(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: shop
spec:
  hosts: [web]
  gateways:
  - missing-gateway
  http:
  - route:
    - destination:
        host: web.example.com
`)
	var lines []string
	for _, m := range msgs {
		lines = append(lines, m.String())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		`Error [IST0101] (VirtualService shop/web input.yaml:9) Referenced gateway not found: "missing-gateway"`,
		`Error [IST0101] (VirtualService shop/web input.yaml:13) Referenced host not found: "web.example.com"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if msgs[0].Type.Level != Error {
		t.Errorf("errors sort first, got %s", msgs[0])
	}
	u := msgs[0].Unstructured()
	if u["origin"] != "VirtualService shop/web" || u["code"] != "IST0101" || u["level"] != "Error" ||
		!strings.HasPrefix(u["documentationUrl"].(string), "https://istio.io/") {
		t.Errorf("unstructured: %v", u)
	}
}

func TestNamespaceFilter(t *testing.T) {
	in := NewInput()
	in.AddFile("f.yaml", []byte(`apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
`), "default")
	if got := Run(in, Options{Namespace: "a"}); len(got) != 1 || got[0].Resource.Name != "a" {
		t.Errorf("namespace a: %v", got)
	}
	if got := Run(in, Options{}); len(got) != 2 {
		t.Errorf("all namespaces: %v", got)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]Level{"info": Info, "Warning": Warning, "ERROR": Error} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := ParseLevel("fatal"); err == nil {
		t.Error("fatal accepted")
	}
}

func TestSuppression(t *testing.T) {
	docs := `apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, annotations: {galley.istio.io/analyze-suppress: "IST0102"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: c}
`
	in := NewInput()
	in.AddFile("f.yaml", []byte(docs), "default")
	sup, err := ParseSuppression("IST0102=Namespace c")
	if err != nil {
		t.Fatal(err)
	}
	got := Run(in, Options{Suppress: []Suppression{sup}})
	if len(got) != 1 || got[0].Resource.Name != "a" {
		t.Errorf("got %v", got)
	}
	wild, _ := ParseSuppression("IST0102=Namespace *")
	if got := Run(in, Options{Suppress: []Suppression{wild}}); len(got) != 0 {
		t.Errorf("wildcard: %v", got)
	}
	if _, err := ParseSuppression("IST0102"); err == nil {
		t.Error("no resource accepted")
	}
	if !KnownCode("IST0101") || KnownCode("IST9999") {
		t.Error("KnownCode")
	}
}
