package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8snetworking "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
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
	// StoredOnly kinds are validated and stored, so manifests holding them
	// apply as they would on a cluster, but Skein does not act on them yet;
	// the Kubernetes mirror does not watch them.
	StoredOnly bool
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
	istio("WorkloadGroup", "networking.istio.io", "workloadgroups", []string{"wg"}, networkingVersions, func() proto.Message { return &networking.WorkloadGroup{} }).storedOnly(),
	istio("ProxyConfig", "networking.istio.io", "proxyconfigs", nil, []string{"v1beta1"}, func() proto.Message { return &networkingv1beta1.ProxyConfig{} }).storedOnly(),
	istio("WasmPlugin", "extensions.istio.io", "wasmplugins", nil, []string{"v1alpha1"}, func() proto.Message { return &extensions.WasmPlugin{} }).storedOnly(),
	istio("TrafficExtension", "extensions.istio.io", "trafficextensions", nil, []string{"v1alpha1"}, func() proto.Message { return &extensions.TrafficExtension{} }).storedOnly(),
	istio("Telemetry", "telemetry.istio.io", "telemetries", []string{"telemetry"}, []string{"v1", "v1alpha1"}, func() proto.Message { return &telemetry.Telemetry{} }),

	{Kind: "Namespace", Group: "", Versions: []string{"v1"}, Plural: "namespaces", ShortNames: []string{"ns"}, NewSpec: func() any { return &corev1.Namespace{} }},
	{Kind: "Service", Group: "", Versions: []string{"v1"}, Plural: "services", ShortNames: []string{"svc"}, Namespaced: true, NewSpec: func() any { return &corev1.Service{} }},
	{Kind: "ServiceAccount", Group: "", Versions: []string{"v1"}, Plural: "serviceaccounts", ShortNames: []string{"sa"}, Namespaced: true, NewSpec: func() any { return &corev1.ServiceAccount{} }},
	{Kind: "ConfigMap", Group: "", Versions: []string{"v1"}, Plural: "configmaps", ShortNames: []string{"cm"}, Namespaced: true, NewSpec: func() any { return &corev1.ConfigMap{} }},
	{Kind: "Secret", Group: "", Versions: []string{"v1"}, Plural: "secrets", Namespaced: true, NewSpec: func() any { return &corev1.Secret{} }},
	{Kind: "Pod", Group: "", Versions: []string{"v1"}, Plural: "pods", ShortNames: []string{"po"}, Namespaced: true, NewSpec: func() any { return &corev1.Pod{} }},
	{Kind: "Deployment", Group: "apps", Versions: []string{"v1"}, Plural: "deployments", ShortNames: []string{"deploy"}, Namespaced: true, NewSpec: func() any { return &appsv1.Deployment{} }},

	// Stored as kubectl would store them; not acted on yet.
	kube("Endpoints", "", "endpoints", []string{"ep"}, true, func() any { return &corev1.Endpoints{} }),
	kube("Ingress", "networking.k8s.io", "ingresses", []string{"ing"}, true, func() any { return &k8snetworking.Ingress{} }),
	kube("IngressClass", "networking.k8s.io", "ingressclasses", nil, false, func() any { return &k8snetworking.IngressClass{} }),
	kube("NetworkPolicy", "networking.k8s.io", "networkpolicies", []string{"netpol"}, true, func() any { return &k8snetworking.NetworkPolicy{} }),
	kube("Role", "rbac.authorization.k8s.io", "roles", nil, true, func() any { return &rbacv1.Role{} }),
	kube("RoleBinding", "rbac.authorization.k8s.io", "rolebindings", nil, true, func() any { return &rbacv1.RoleBinding{} }),
	kube("ClusterRole", "rbac.authorization.k8s.io", "clusterroles", nil, false, func() any { return &rbacv1.ClusterRole{} }),
	kube("ClusterRoleBinding", "rbac.authorization.k8s.io", "clusterrolebindings", nil, false, func() any { return &rbacv1.ClusterRoleBinding{} }),

	// Gateway API: one Go type (v1) for every served version, as the
	// older versions' types are aliases or field-compatible.
	gatewayAPI("GatewayClass", "gatewayclasses", []string{"gc"}, false, []string{"v1", "v1beta1"}, func() any { return &gatewayv1.GatewayClass{} }),
	gatewayAPI("Gateway", "gateways", nil, true, []string{"v1", "v1beta1"}, func() any { return &gatewayv1.Gateway{} }),
	gatewayAPI("HTTPRoute", "httproutes", nil, true, []string{"v1", "v1beta1"}, func() any { return &gatewayv1.HTTPRoute{} }),
	gatewayAPI("GRPCRoute", "grpcroutes", nil, true, []string{"v1", "v1alpha2"}, func() any { return &gatewayv1.GRPCRoute{} }),
	gatewayAPI("TCPRoute", "tcproutes", nil, true, []string{"v1alpha2", "v1"}, func() any { return &gatewayv1.TCPRoute{} }),
	gatewayAPI("TLSRoute", "tlsroutes", nil, true, []string{"v1", "v1alpha2", "v1alpha3"}, func() any { return &gatewayv1.TLSRoute{} }),
	gatewayAPI("ReferenceGrant", "referencegrants", []string{"refgrant"}, true, []string{"v1", "v1beta1", "v1alpha2"}, func() any { return &gatewayv1.ReferenceGrant{} }),
}

// GatewayAPIGroup is the Kubernetes Gateway API's group.
const GatewayAPIGroup = "gateway.networking.k8s.io"

func (s *Schema) storedOnly() *Schema { s.StoredOnly = true; return s }

func kube(kind, group, plural string, short []string, namespaced bool, newSpec func() any) *Schema {
	return &Schema{Kind: kind, Group: group, Versions: []string{"v1"}, Plural: plural, ShortNames: short,
		Namespaced: namespaced, NewSpec: newSpec, StoredOnly: true}
}

func gatewayAPI(kind, plural string, short []string, namespaced bool, versions []string, newSpec func() any) *Schema {
	return &Schema{Kind: kind, Group: GatewayAPIGroup, Versions: versions, Plural: plural, ShortNames: short,
		Namespaced: namespaced, NewSpec: newSpec, StoredOnly: true}
}

// KeyKind is the Kind in the object's Key: the Kind, qualified by group
// where two groups share it (the Gateway API's Gateway is
// "Gateway.gateway.networking.k8s.io", Istio's stays "Gateway"), so the
// two never meet in one list.
func (s *Schema) KeyKind() string { return keyKind(s.Group, s.Kind) }

func keyKind(group, kind string) string {
	if group == GatewayAPIGroup && kind == "Gateway" {
		return kind + "." + group
	}
	return kind
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
