package router

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// parseRouteConfig reads a RouteConfiguration written as protojson in YAML.
func parseRouteConfig(t testing.TB, doc string) *routev3.RouteConfiguration {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal(js, rc); err != nil {
		t.Fatalf("protojson: %v\n%s", err, js)
	}
	return rc
}

func mustCompile(t testing.TB, doc string) *Table {
	t.Helper()
	tbl, err := Compile(parseRouteConfig(t, doc), stringFilters{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

// newRequest builds a server-side style request; headers come as
// name, value pairs.
func newRequest(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		if http.CanonicalHeaderKey(headers[i]) == "Host" {
			r.Host = headers[i+1]
			continue
		}
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// singleVhost wraps routes (YAML list items, indented by 4) in a route
// config with one virtual host for every domain.
func singleVhost(routes string) string {
	return `
name: test
virtualHosts:
- name: vh
  domains: ["*"]
  routes:
` + routes
}

// stringFilters compiles StringValue per-filter configs to their string,
// standing in for the filter registry.
type stringFilters struct{}

func (stringFilters) PerRoute(name string, a *anypb.Any) (any, error) {
	var s wrapperspb.StringValue
	if a.MessageIs(&routev3.CorsPolicy{}) {
		return "cors", nil
	}
	if !a.MessageIs(&s) {
		return nil, fmt.Errorf("typed_per_filter_config %q: %s is not supported", name, a.GetTypeUrl())
	}
	if err := a.UnmarshalTo(&s); err != nil {
		return nil, err
	}
	return s.GetValue(), nil
}
