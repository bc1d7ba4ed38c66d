package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Schema describes one kind Skein understands.
type Schema struct {
	Kind       string
	Group      string
	Versions   []string // accepted versions; the first is the preferred one
	Plural     string
	ShortNames []string
	Namespaced bool
	// NewSpec returns an empty typed body: a proto message for Istio kinds,
	// a k8s.io/api object pointer for Kubernetes kinds.
	NewSpec func() any
}

// IsIstio reports whether the kind's Spec is an istio.io/api proto message.
func (s *Schema) IsIstio() bool { return strings.HasSuffix(s.Group, "istio.io") }

// GVK returns the schema's preferred group/version/kind.
func (s *Schema) GVK() GVK { return GVK{Group: s.Group, Version: s.Versions[0], Kind: s.Kind} }

// Resource is the kubectl-style "plural.group" name used in result lines,
// e.g. "virtualservice.networking.istio.io".
func (s *Schema) Resource() string {
	if s.Group == "" {
		return strings.ToLower(s.Kind)
	}
	return strings.ToLower(s.Kind) + "." + s.Group
}

func istio(kind, group, plural string, short []string, versions []string, newSpec func() proto.Message) *Schema {
	return &Schema{Kind: kind, Group: group, Versions: versions, Plural: plural, ShortNames: short,
		Namespaced: true, NewSpec: func() any { return newSpec() }}
}

var (
	networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
	securityVersions   = []string{"v1", "v1beta1"}
)

// Schemas lists every kind, Istio first then Kubernetes.
var Schemas = []*Schema{
	istio("Gateway", "networking.istio.io", "gateways", []string{"gw"}, networkingVersions, func() proto.Message { return &networking.Gateway{} }),
	istio("VirtualService", "networking.istio.io", "virtualservices", []string{"vs"}, networkingVersions, func() proto.Message { return &networking.VirtualService{} }),
	istio("DestinationRule", "networking.istio.io", "destinationrules", []string{"dr"}, networkingVersions, func() proto.Message { return &networking.DestinationRule{} }),
	istio("ServiceEntry", "networking.istio.io", "serviceentries", []string{"se"}, networkingVersions, func() proto.Message { return &networking.ServiceEntry{} }),
	istio("WorkloadEntry", "networking.istio.io", "workloadentries", []string{"we"}, networkingVersions, func() proto.Message { return &networking.WorkloadEntry{} }),
	istio("Sidecar", "networking.istio.io", "sidecars", nil, networkingVersions, func() proto.Message { return &networking.Sidecar{} }),
	istio("EnvoyFilter", "networking.istio.io", "envoyfilters", nil, []string{"v1alpha3"}, func() proto.Message { return &networking.EnvoyFilter{} }),
	istio("PeerAuthentication", "security.istio.io", "peerauthentications", []string{"pa"}, securityVersions, func() proto.Message { return &security.PeerAuthentication{} }),
	istio("RequestAuthentication", "security.istio.io", "requestauthentications", []string{"ra"}, securityVersions, func() proto.Message { return &security.RequestAuthentication{} }),
	istio("AuthorizationPolicy", "security.istio.io", "authorizationpolicies", []string{"ap"}, securityVersions, func() proto.Message { return &security.AuthorizationPolicy{} }),
	istio("Telemetry", "telemetry.istio.io", "telemetries", []string{"telemetry"}, []string{"v1", "v1alpha1"}, func() proto.Message { return &telemetry.Telemetry{} }),

	{Kind: "Namespace", Group: "", Versions: []string{"v1"}, Plural: "namespaces", ShortNames: []string{"ns"}, NewSpec: func() any { return &corev1.Namespace{} }},
	{Kind: "Service", Group: "", Versions: []string{"v1"}, Plural: "services", ShortNames: []string{"svc"}, Namespaced: true, NewSpec: func() any { return &corev1.Service{} }},
	{Kind: "ServiceAccount", Group: "", Versions: []string{"v1"}, Plural: "serviceaccounts", ShortNames: []string{"sa"}, Namespaced: true, NewSpec: func() any { return &corev1.ServiceAccount{} }},
	{Kind: "ConfigMap", Group: "", Versions: []string{"v1"}, Plural: "configmaps", ShortNames: []string{"cm"}, Namespaced: true, NewSpec: func() any { return &corev1.ConfigMap{} }},
	{Kind: "Secret", Group: "", Versions: []string{"v1"}, Plural: "secrets", Namespaced: true, NewSpec: func() any { return &corev1.Secret{} }},
	{Kind: "Pod", Group: "", Versions: []string{"v1"}, Plural: "pods", ShortNames: []string{"po"}, Namespaced: true, NewSpec: func() any { return &corev1.Pod{} }},
	{Kind: "Deployment", Group: "apps", Versions: []string{"v1"}, Plural: "deployments", ShortNames: []string{"deploy"}, Namespaced: true, NewSpec: func() any { return &appsv1.Deployment{} }},
}

// SchemaForKind finds a schema by Kind, plural, singular or short name,
// case-insensitively, optionally qualified by group ("vs", "virtualservices",
// "virtualservice.networking.istio.io").
func SchemaForKind(name string) (*Schema, bool) {
	n := strings.ToLower(name)
	group := ""
	if i := strings.IndexByte(n, '.'); i > 0 {
		n, group = n[:i], n[i+1:]
	}
	for _, s := range Schemas {
		if group != "" && group != s.Group {
			continue
		}
		if n == strings.ToLower(s.Kind) || n == s.Plural {
			return s, true
		}
		for _, sn := range s.ShortNames {
			if n == sn {
				return s, true
			}
		}
	}
	return nil, false
}

// SchemaForGVK finds the schema for an apiVersion/kind pair as written in YAML.
func SchemaForGVK(apiVersion, kind string) (*Schema, bool) {
	group, version := "", apiVersion
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		group, version = apiVersion[:i], apiVersion[i+1:]
	}
	for _, s := range Schemas {
		if s.Kind != kind || s.Group != group {
			continue
		}
		for _, v := range s.Versions {
			if v == version {
				return s, true
			}
		}
	}
	return nil, false
}
