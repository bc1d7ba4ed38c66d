package model_test

import (
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
)

// The tutorial's "Pilot Configuration" ConfigMap, verbatim.
const tutorialMesh = `apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |
    defaultConfig:
      proxyStatsMatcher:
        inclusionRegexps:
          - ".*circuit_breakers.*"
          - ".*upstream_rq_retry.*"
          - ".*upstream_rq_pending.*"
          - ".*_cx_.*"
        exclusionRegexps:
          - ".*osconfig.*"
    enablePrometheusMerge: false
`

func TestMeshConfigFromConfigMap(t *testing.T) {
	objs, _, err := config.LoadReader("mesh.yaml", strings.NewReader(tutorialMesh), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	pc := model.NewPushContext("1", store.Snapshot(), nil, "cluster.local", "istio-system")
	mc, err := pc.MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	m := mc.GetDefaultConfig().GetProxyStatsMatcher()
	if len(m.GetInclusionRegexps()) != 4 || len(mc.StatsExclusionRegexps) != 1 || mc.StatsExclusionRegexps[0] != ".*osconfig.*" {
		t.Errorf("proxyStatsMatcher = %v", m)
	}
	if mc.GetEnablePrometheusMerge().GetValue() {
		t.Errorf("enablePrometheusMerge should be false")
	}
	if !mc.GetEnableTracing() {
		t.Errorf("defaults lost: enableTracing should stay true")
	}

	empty := model.NewPushContext("1", configstore.OpenMemory().Snapshot(), nil, "cluster.local", "istio-system")
	if mc, err := empty.MeshConfig(); err != nil || mc.GetDefaultConfig() == nil || !mc.GetEnableTracing() {
		t.Errorf("defaults without a ConfigMap: %v %v", mc, err)
	}
}
