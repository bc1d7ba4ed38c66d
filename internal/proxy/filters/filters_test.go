package filters_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

type denyAll struct{}

func (d denyAll) OnRequest(*filters.Request) *filters.LocalReply {
	return &filters.LocalReply{Status: http.StatusForbidden, Body: "RBAC: access denied"}
}

type tagResponse struct{ name string }

func (t tagResponse) OnRequest(*filters.Request) *filters.LocalReply { return nil }
func (t tagResponse) OnResponse(_ *filters.Request, _ int, h http.Header) {
	h.Add("X-Order", t.name)
}

func TestRegistryBuildsByTypeAndUnwrapsTypedStruct(t *testing.T) {
	reg := filters.NewRegistry()
	var built *routerv3.Router
	reg.Register("envoy.filters.http.router", &routerv3.Router{}, func(cfg *anypb.Any) (filters.HTTPFilter, error) {
		built = &routerv3.Router{}
		if err := cfg.UnmarshalTo(built); err != nil {
			return nil, err
		}
		return denyAll{}, nil
	})
	value, _ := structpb.NewStruct(map[string]any{"suppress_envoy_headers": true})
	ts, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", Value: value})
	if _, err := reg.Build("any-name", ts); err != nil {
		t.Fatal(err)
	}
	if !built.GetSuppressEnvoyHeaders() {
		t.Errorf("TypedStruct value not applied: %v", built)
	}

	unknown, _ := anypb.New(&structpb.Struct{})
	_, err := reg.Build("envoy.filters.http.foo", unknown)
	if err == nil || !strings.Contains(err.Error(), `http filter "envoy.filters.http.foo" (google.protobuf.Struct) is not supported`) {
		t.Errorf("unknown filter error = %v", err)
	}
	badTS, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: "type.googleapis.com/no.such.Type"})
	if _, err := reg.Build("x", badTS); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("bad TypedStruct error = %v", err)
	}
}

func TestChainOrder(t *testing.T) {
	chain := filters.Chain{tagResponse{"a"}, tagResponse{"b"}}
	if reply := chain.OnRequest(&filters.Request{}); reply != nil {
		t.Fatalf("unexpected reply %v", reply)
	}
	h := http.Header{}
	chain.OnResponse(&filters.Request{}, 200, h)
	if got := strings.Join(h.Values("X-Order"), ","); got != "b,a" {
		t.Errorf("response order %s, want b,a (reverse)", got)
	}
	chain = append(chain, denyAll{}, tagResponse{"never"})
	if reply := chain.OnRequest(&filters.Request{}); reply == nil || reply.Status != 403 {
		t.Errorf("deny did not stop the chain: %v", reply)
	}
}

func TestTypedStructOnlyFilter(t *testing.T) {
	reg := filters.NewRegistry()
	var got string
	reg.RegisterTypedStruct("istio.stats", "type.googleapis.com/stats.PluginConfig", func(v *structpb.Struct) (filters.HTTPFilter, error) {
		got = v.GetFields()["disable_host_header_fallback"].String()
		return tagResponse{"stats"}, nil
	})
	value, _ := structpb.NewStruct(map[string]any{"disable_host_header_fallback": true})
	ts, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: "type.googleapis.com/stats.PluginConfig", Value: value})
	if _, err := reg.Build("istio.stats", ts); err != nil {
		t.Fatal(err)
	}
	if got == "" {
		t.Error("factory did not receive the TypedStruct value")
	}
	other, _ := anypb.New(&udpav1.TypedStruct{TypeUrl: "type.googleapis.com/stats.Other", Value: value})
	if _, err := reg.Build("x", other); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("unregistered TypedStruct type: err = %v", err)
	}
}

func TestFilterStateInlineAndOverflow(t *testing.T) {
	var r filters.Request
	keys := make([]*filters.StateKey, 7)
	for i := range keys {
		keys[i] = filters.NewStateKey(fmt.Sprint("k", i))
		r.SetState(keys[i], i)
	}
	r.SetState(keys[1], "inline replaced")
	r.SetState(keys[5], "overflow replaced")
	want := []any{0, "inline replaced", 2, 3, 4, "overflow replaced", 6}
	for i, k := range keys {
		if got := r.State(k); got != want[i] {
			t.Errorf("State(%s) = %v, want %v", k, got, want[i])
		}
	}
	if got := r.State(filters.NewStateKey("other")); got != nil {
		t.Errorf("unknown key: %v, want nil", got)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		var q filters.Request
		q.SetState(keys[0], keys[1])
		_ = q.State(keys[0])
	}); allocs != 0 {
		t.Errorf("inline state allocates %v times per request", allocs)
	}
}
