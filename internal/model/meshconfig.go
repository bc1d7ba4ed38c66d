package model

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
)

// MeshConfigName is the ConfigMap (in the root namespace) holding Istio's
// mesh config under the key "mesh", as istiod reads it.
const MeshConfigName = "istio"

// Mesh is Istio's mesh config plus what users write that the proto lacks:
// defaultConfig.proxyStatsMatcher.exclusionRegexps (in the tutorial's
// "Pilot Configuration" and honoured by Skein's stats).
type Mesh struct {
	*meshv1alpha1.MeshConfig
	StatsExclusionRegexps []string
}

// MeshConfig returns the mesh config from the "istio" ConfigMap in the root
// namespace, over Istio's defaults. A ConfigMap that does not parse leaves
// the defaults and returns the error (so translation can warn).
func (pc *PushContext) MeshConfig() (*Mesh, error) {
	pc.meshOnce.Do(func() { pc.mesh, pc.meshErr = loadMeshConfig(pc.cfg, pc.RootNamespace) })
	return pc.mesh, pc.meshErr
}

func defaultMeshConfig() *meshv1alpha1.MeshConfig {
	return &meshv1alpha1.MeshConfig{
		EnableTracing:         true,
		AccessLogEncoding:     meshv1alpha1.MeshConfig_TEXT,
		EnablePrometheusMerge: nil,
		DefaultConfig:         &meshv1alpha1.ProxyConfig{},
		RootNamespace:         "istio-system",
		TrustDomain:           "cluster.local",
	}
}

func loadMeshConfig(cfg config.Reader, rootNamespace string) (*Mesh, error) {
	mc := &Mesh{MeshConfig: defaultMeshConfig()}
	obj, ok := cfg.Get(config.Key{Kind: "ConfigMap", Namespace: rootNamespace, Name: MeshConfigName})
	if !ok {
		return mc, nil
	}
	cm, ok := obj.Spec.(*corev1.ConfigMap)
	if !ok || cm.Data["mesh"] == "" {
		return mc, nil
	}
	j, err := yaml.YAMLToJSON([]byte(cm.Data["mesh"]))
	if err != nil {
		return mc, fmt.Errorf("ConfigMap %s/%s data.mesh: %v", rootNamespace, MeshConfigName, err)
	}
	// Istio applies the user's mesh YAML over its defaults: merge as JSON
	// (protojson resets the message it decodes into).
	var user map[string]any
	if err := json.Unmarshal(j, &user); err != nil {
		return mc, fmt.Errorf("ConfigMap %s/%s data.mesh: %v", rootNamespace, MeshConfigName, err)
	}
	defJSON, _ := protojson.Marshal(defaultMeshConfig())
	var merged map[string]any
	_ = json.Unmarshal(defJSON, &merged)
	for k, v := range user {
		merged[k] = v
	}
	mj, _ := json.Marshal(merged)
	parsed := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(mj, parsed); err != nil {
		return mc, fmt.Errorf("ConfigMap %s/%s data.mesh: %v", rootNamespace, MeshConfigName, err)
	}
	if parsed.DefaultConfig == nil {
		parsed.DefaultConfig = &meshv1alpha1.ProxyConfig{}
	}
	var extra struct {
		DefaultConfig struct {
			ProxyStatsMatcher struct {
				ExclusionRegexps []string `json:"exclusionRegexps"`
			} `json:"proxyStatsMatcher"`
		} `json:"defaultConfig"`
	}
	_ = yaml.Unmarshal([]byte(cm.Data["mesh"]), &extra) // it parsed as JSON above
	return &Mesh{MeshConfig: parsed, StatsExclusionRegexps: extra.DefaultConfig.ProxyStatsMatcher.ExclusionRegexps}, nil
}
