package model_test

import (
	"slices"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/model"
)

// envoyFilters is a config.Reader holding only EnvoyFilters.
type envoyFilters []*config.Object

func (e envoyFilters) List(kind string) []*config.Object {
	if kind == "EnvoyFilter" {
		return e
	}
	return nil
}
func (e envoyFilters) Get(config.Key) (*config.Object, bool) { return nil, false }
func (e envoyFilters) Revision() int64                       { return 1 }

func TestEnvoyFiltersSelectionAndOrder(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ef := func(ns, name string, created int, priority int32, selector map[string]string) *config.Object {
		spec := &networking.EnvoyFilter{Priority: priority}
		if selector != nil {
			spec.WorkloadSelector = &networking.WorkloadSelector{Labels: selector}
		}
		return &config.Object{
			GVK:  config.GVK{Group: "networking.istio.io", Version: "v1alpha3", Kind: "EnvoyFilter"},
			Meta: config.Meta{Namespace: ns, Name: name, CreationTimestamp: t0.Add(time.Duration(created) * time.Minute)},
			Spec: spec,
		}
	}
	gw := ef("bookinfo", "by-target-ref", 0, 0, nil)
	gw.Spec.(*networking.EnvoyFilter).TargetRefs = []*typev1beta1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "bookinfo-gw"}}
	cfg := envoyFilters{
		ef("bookinfo", "ns-late", 5, 0, nil),
		ef("bookinfo", "ns-early", 1, 0, nil),
		ef("bookinfo", "ns-selected", 2, 0, map[string]string{"app": "productpage"}),
		ef("bookinfo", "ns-other-app", 0, 0, map[string]string{"app": "reviews"}),
		ef("bookinfo", "ns-first-by-priority", 9, -10, nil),
		ef("istio-system", "root-late", 7, 0, nil),
		ef("istio-system", "root-last-by-priority", 0, 10, nil),
		ef("default", "other-namespace", 0, 0, nil),
		gw,
	}
	pc := model.NewPushContext("1", cfg, nil, "cluster.local", "istio-system")
	var got []string
	for _, o := range pc.EnvoyFilters(&model.Proxy{Namespace: "bookinfo", Labels: map[string]string{"app": "productpage"}}) {
		got = append(got, o.Name)
	}
	want := []string{"ns-first-by-priority", "root-late", "ns-early", "ns-selected", "ns-late", "root-last-by-priority"}
	if !slices.Equal(got, want) {
		t.Errorf("EnvoyFilters = %v\nwant            %v", got, want)
	}
	got = nil
	for _, o := range pc.EnvoyFilters(&model.Proxy{Namespace: "bookinfo", Labels: map[string]string{"gateway.networking.k8s.io/gateway-name": "bookinfo-gw"}}) {
		got = append(got, o.Name)
	}
	if !slices.Contains(got, "by-target-ref") || slices.Contains(got, "ns-selected") {
		t.Errorf("gateway proxy gets %v, want by-target-ref and not ns-selected", got)
	}
}
