// Package install generates what `skein install` puts into a Kubernetes
// cluster — Istio's CRDs, istiod (RBAC, Deployment, Service, the mesh
// ConfigMap), the sidecar injector's MutatingWebhookConfiguration and the
// ingress gateway — and applies or removes it with server-side apply
// through the dynamic client. `skein manifest generate` prints the same
// objects.
package install

import (
	"bytes"
	"fmt"
	"net"
	"sort"
	"strings"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/inject"
)

// Names of istiod's objects, as in Istio's charts.
const (
	IstiodName     = "istiod"
	WebhookName    = "istio-sidecar-injector"
	MeshConfigName = "istio"
	CACertsSecret  = "cacerts"
	// AdminCredentialSecret carries the control plane's admin credential
	// (key admin-token) to what in the cluster reads its debug endpoints:
	// istiod adopts it, the dashboard (samples/addons/kiali.yaml) sends it.
	// Secrets are guarded by the cluster's RBAC, as cacerts is.
	AdminCredentialSecret = "skein-admin-credential"
	WebhookPort           = 15017
	fieldManager          = "skein-install"
	labelManagedBy        = "app.kubernetes.io/managed-by"
	managedBySkein        = "skein"
	defaultRevision       = "default"
)

// Options describe one installation.
type Options struct {
	// Image is istiod's image and injected proxies' (default
	// inject.DefaultProxyImage).
	Image string
	// ExternalDiscovery is host:port of a control plane running outside
	// the cluster (Istio's "external istiod"): istiod's Deployment and
	// Service are left out, the webhook calls https://host:15017/inject
	// and sidecars are given this xDS address.
	ExternalDiscovery string
	// CABundle is the PEM root the API server trusts the webhook with (the
	// mesh CA's root).
	CABundle []byte
	// CACerts, when set, become the cacerts Secret istiod's Deployment
	// mounts as its plug-in CA (Istio's layout: ca-cert.pem, ca-key.pem,
	// root-cert.pem, cert-chain.pem), so the in-cluster istiod signs with
	// the root in CABundle. Never printed by manifest generate.
	CACerts map[string][]byte
	// AdminCredential, when set, becomes the AdminCredentialSecret.
	AdminCredential []byte
	// Values are the --set settings, parsed (see ParseSet).
	Values Values
}

// Values are the istioctl settings Skein honours (see Parse).
type Values struct {
	Profile       string         // default | demo | minimal | empty
	Revision      string         // revision / values.defaultRevision
	MeshConfig    map[string]any // meshConfig.* (merged into the mesh ConfigMap)
	TrustDomain   string         // meshConfig.trustDomain / values.global.trustDomain
	ClusterID     string         // values.global.multiCluster.clusterName
	MeshID        string         // values.global.meshID
	Hub, Tag      string         // values.global.hub / tag: the image
	ProxyLogLevel string         // values.global.proxy.logLevel
	Egress        bool           // components.egressGateways[0].enabled (demo profile: true)
	NoIngress     bool           // components.ingressGateways[0].enabled=false (minimal, empty)
	NoPilot       bool           // components.pilot.enabled=false (empty)
	// Helm is the values.* tree: the injector ConfigMap's values key, which
	// the injection reads (global.proxy.resources, ...).
	Helm map[string]any
	// Pilot, IngressK8s and EgressK8s are the components' Kubernetes
	// settings (values.pilot / values.gateways.* and components.*.k8s).
	Pilot, IngressK8s, EgressK8s K8sSettings
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// parseScalar types a --set value as istioctl does: booleans and numbers
// become YAML scalars, anything else a string.
func parseScalar(s string) any {
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err == nil {
		switch v.(type) {
		case bool, float64, int64, int:
			return v
		}
	}
	return s
}

// Component groups objects as istioctl reports progress.
type Component struct {
	Name    string // "Istio core", "Istiod", "Ingress gateways", "Egress gateways"
	Objects []*unstructured.Unstructured
}

func (o *Options) image() string {
	v := o.Values
	if v.Hub != "" || v.Tag != "" {
		hub, tag := firstNonEmpty(v.Hub, "skein"), firstNonEmpty(v.Tag, "latest")
		return hub + "/skein:" + tag
	}
	return firstNonEmpty(o.Image, inject.DefaultProxyImage)
}

func (o *Options) revision() string { return firstNonEmpty(o.Values.Revision, defaultRevision) }

func (o *Options) trustDomain() string { return firstNonEmpty(o.Values.TrustDomain, "cluster.local") }

// discoveryAddress is what sidecars and gateways dial.
func (o *Options) discoveryAddress() string {
	return firstNonEmpty(o.ExternalDiscovery, inject.DefaultDiscoveryAddress)
}

// InjectParams are the injection parameters the installation implies (the
// webhook's and the pre-injected gateways').
func (o *Options) InjectParams() inject.Params {
	return inject.Params{
		ProxyImage: o.image(), DiscoveryAddress: o.discoveryAddress(),
		TrustDomain: o.trustDomain(), ClusterID: o.Values.ClusterID, MeshID: o.Values.MeshID,
		LogLevel: o.Values.ProxyLogLevel, Revision: o.revision(),
	}
}

// Validate reports options that cannot make a working installation.
func (o *Options) Validate() error {
	if o.ExternalDiscovery != "" {
		host, port, err := net.SplitHostPort(o.ExternalDiscovery)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("--external-discovery %q: want HOST:PORT (the control plane's xDS address)", o.ExternalDiscovery)
		}
	}
	if o.Values.Profile != "empty" && len(o.CABundle) == 0 {
		return fmt.Errorf("no CA bundle: the webhook configuration needs the mesh CA's root certificate")
	}
	return nil
}

// Components returns the installation's objects, in the order they are
// applied: core (CRDs, namespace, RBAC), istiod, then the gateways.
func Components(o Options) ([]Component, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var comps []Component
	add := func(name string, objs ...any) error {
		c := Component{Name: name}
		for _, obj := range objs {
			u, err := toUnstructured(obj)
			if err != nil {
				return err
			}
			c.Objects = append(c.Objects, u)
		}
		comps = append(comps, c)
		return nil
	}
	var core []any
	for _, crd := range CRDs() {
		core = append(core, crd)
	}
	core = append(core, &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace, Labels: map[string]string{labelManagedBy: managedBySkein}},
	})
	core = append(core, istiodRBAC()...)
	if err := add("Istio core", core...); err != nil {
		return nil, err
	}
	if o.Values.Profile == "empty" {
		return comps, nil
	}

	var istiod []any
	mesh, err := o.meshConfigMap()
	if err != nil {
		return nil, err
	}
	injector, err := o.injectorConfigMap()
	if err != nil {
		return nil, err
	}
	istiod = append(istiod, mesh, injector)
	if len(o.AdminCredential) > 0 {
		istiod = append(istiod, o.adminCredentialSecret())
	}
	if o.ExternalDiscovery == "" && !o.Values.NoPilot {
		if len(o.CACerts) > 0 {
			istiod = append(istiod, o.caCertsSecret())
		}
		dep := o.istiodDeployment()
		hpa, err := applyK8s(o.Values.Pilot, dep, "discovery", nil)
		if err != nil {
			return nil, err
		}
		istiod = append(istiod, o.istiodService(), dep)
		if hpa != nil {
			istiod = append(istiod, hpa)
		}
	}
	istiod = append(istiod, o.webhook())
	if err := add("Istiod", istiod...); err != nil {
		return nil, err
	}

	for _, g := range []struct {
		name string
		spec GatewaySpec
		on   bool
		k8s  K8sSettings
	}{{"Ingress gateways", Ingress, !o.Values.NoIngress, o.Values.IngressK8s}, {"Egress gateways", Egress, o.Values.Egress, o.Values.EgressK8s}} {
		if !g.on {
			continue
		}
		sa, svc, dep := Gateway(g.spec, SystemNamespace)
		// Pre-injected with the gateway template: the gateway does not
		// depend on the webhook being up when its pods are created.
		if _, err := inject.Template(&dep.Spec.Template, inject.Target{
			Namespace: SystemNamespace, WorkloadName: dep.Name, WorkloadKind: "Deployment", WorkloadAPIVersion: "apps/v1",
		}, o.InjectParams()); err != nil {
			return nil, fmt.Errorf("%s: %w", dep.Name, err)
		}
		hpa, err := applyK8s(g.k8s, dep, inject.ProxyContainerName, svc)
		if err != nil {
			return nil, err
		}
		objs := []any{sa, svc, dep}
		if hpa != nil {
			objs = append(objs, hpa)
		}
		if err := add(g.name, objs...); err != nil {
			return nil, err
		}
	}
	return comps, nil
}

// Objects flattens Components.
func Objects(o Options) ([]*unstructured.Unstructured, error) {
	comps, err := Components(o)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, c := range comps {
		objs = append(objs, c.Objects...)
	}
	return objs, nil
}

// YAML renders objects as one kubectl-style multi-document stream. Secrets
// are left out: manifest generate never prints CA keys.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for _, u := range objs {
		if u.GetKind() == "Secret" {
			continue
		}
		doc, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	return b.Bytes(), nil
}

// CRDs are the CustomResourceDefinitions of every Istio kind Skein's config
// layer knows, with Istio's names, short names and categories; every
// version is served, v1 stored where it exists. Schemas preserve unknown
// fields: Skein validates Istio objects itself (the mirror keeps invalid
// ones out of the mesh, with the reason).
func CRDs() []map[string]any {
	var crds []map[string]any
	for _, s := range config.Schemas {
		if !s.IsIstio() {
			continue
		}
		storage := s.Versions[0]
		for _, v := range s.Versions {
			if v == "v1" {
				storage = v
			}
		}
		var versions []any
		for _, v := range sortedVersions(s.Versions) {
			versions = append(versions, map[string]any{
				"name": v, "served": true, "storage": v == storage,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
				"subresources": map[string]any{"status": map[string]any{}},
			})
		}
		names := map[string]any{
			"kind": s.Kind, "listKind": s.Kind + "List", "plural": s.Plural,
			"singular":   strings.ToLower(s.Kind),
			"categories": []any{"istio-io", strings.Split(s.Group, ".")[0] + "-istio-io"},
		}
		if len(s.ShortNames) > 0 {
			var short []any
			for _, n := range s.ShortNames {
				short = append(short, n)
			}
			names["shortNames"] = short
		}
		crds = append(crds, map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata": map[string]any{
				"name":   s.Plural + "." + s.Group,
				"labels": map[string]any{"app": "istio-pilot", "chart": "istio", labelManagedBy: managedBySkein},
			},
			"spec": map[string]any{
				"group": s.Group, "names": names, "scope": "Namespaced", "versions": versions,
			},
		})
	}
	return crds
}

// sortedVersions orders versions as the API server lists them: GA, beta,
// alpha, newest first within each.
func sortedVersions(vs []string) []string {
	out := append([]string(nil), vs...)
	rank := func(v string) int {
		switch {
		case strings.Contains(v, "alpha"):
			return 2
		case strings.Contains(v, "beta"):
			return 1
		}
		return 0
	}
	sort.SliceStable(out, func(i, j int) bool {
		if rank(out[i]) != rank(out[j]) {
			return rank(out[i]) < rank(out[j])
		}
		return out[i] > out[j]
	})
	return out
}

// istiodRBAC is what the control plane needs in Kubernetes mode: read the
// objects it mirrors, review tokens (the CA), maintain the webhook's CA
// bundle and write Istio status.
func istiodRBAC() []any {
	labels := map[string]string{"app": IstiodName, "istio": "pilot", labelManagedBy: managedBySkein}
	read := []string{"get", "list", "watch"}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: SystemNamespace, Labels: labels},
	}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-" + SystemNamespace, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}, Resources: []string{"*"}, Verbs: read},
			{APIGroups: []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}, Resources: []string{"*/status"}, Verbs: []string{"get", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "endpoints", "pods", "nodes", "configmaps", "secrets", "serviceaccounts"}, Verbs: read},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: read},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: SystemNamespace}},
	}
	return []any{sa, role, binding}
}

// meshConfigMap is the ConfigMap istio (key mesh) with Istio's defaults and
// the meshConfig.* settings over them.
func (o *Options) meshConfigMap() (*corev1.ConfigMap, error) {
	mesh := map[string]any{
		"rootNamespace":         SystemNamespace,
		"trustDomain":           o.trustDomain(),
		"enablePrometheusMerge": true,
		"defaultConfig": map[string]any{
			"discoveryAddress": o.discoveryAddress(),
		},
	}
	mergeMaps(mesh, o.Values.MeshConfig)
	b, err := yaml.Marshal(mesh)
	if err != nil {
		return nil, fmt.Errorf("meshConfig: %v", err)
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: MeshConfigName, Namespace: SystemNamespace, Labels: map[string]string{"istio.io/rev": o.revision(), labelManagedBy: managedBySkein}},
		Data:       map[string]string{"mesh": string(b)},
	}, nil
}

func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func (o *Options) caCertsSecret() *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: CACertsSecret, Namespace: SystemNamespace, Labels: map[string]string{labelManagedBy: managedBySkein}},
		Data:       o.CACerts,
	}
}

func (o *Options) adminCredentialSecret() *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: AdminCredentialSecret, Namespace: SystemNamespace, Labels: map[string]string{labelManagedBy: managedBySkein}},
		Data:       map[string][]byte{"admin-token": o.AdminCredential},
	}
}

var istiodLabels = map[string]string{"app": IstiodName, "istio": "pilot"}

func (o *Options) istiodService() *corev1.Service {
	labels := copyMap(istiodLabels)
	labels["istio.io/rev"] = o.revision()
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: IstiodName, Namespace: SystemNamespace, Labels: labels,
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15014"}},
		Spec: corev1.ServiceSpec{
			Selector: copyMap(istiodLabels),
			Ports: []corev1.ServicePort{
				{Name: "grpc-xds", Port: 15010, TargetPort: intstr.FromInt32(15010), Protocol: corev1.ProtocolTCP},
				// Istio's TLS xDS port: Skein serves xDS and the CA in
				// plaintext on 15010, so clients configured with 15012 reach it.
				{Name: "https-dns", Port: 15012, TargetPort: intstr.FromInt32(15010), Protocol: corev1.ProtocolTCP},
				{Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(WebhookPort), Protocol: corev1.ProtocolTCP},
				{Name: "http-monitoring", Port: 15014, TargetPort: intstr.FromInt32(15014), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

func (o *Options) istiodDeployment() *appsv1.Deployment {
	labels := copyMap(istiodLabels)
	labels["istio.io/rev"] = o.revision()
	podLabels := copyMap(labels)
	podLabels[inject.KeyInject] = "false"
	args := []string{"discovery", "--kube",
		// Plaintext xDS as Istio's 15010: injected proxies have no mesh root to
		// verify 15012 with; streams still need the pod's token.
		"--grpc-addr", "0.0.0.0:15010", "--plaintext-xds", "--http-addr", "0.0.0.0:15014",
		"--injection-addr", fmt.Sprintf("0.0.0.0:%d", WebhookPort),
		"--injection-discovery-address", o.discoveryAddress(),
		"--injection-proxy-image", o.image(),
		"--trust-domain", o.trustDomain(),
	}
	if o.Values.ClusterID != "" {
		args = append(args, "--cluster-id", o.Values.ClusterID)
	}
	spec := corev1.PodSpec{
		ServiceAccountName: "istiod",
		Containers: []corev1.Container{{
			Name: "discovery", Image: o.image(), Command: []string{"skein"}, Args: args,
			Ports: []corev1.ContainerPort{
				{Name: "grpc-xds", ContainerPort: 15010, Protocol: corev1.ProtocolTCP},
				{Name: "http-monitoring", ContainerPort: 15014, Protocol: corev1.ProtocolTCP},
				{Name: "https-webhook", ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(15014)}},
				PeriodSeconds: 3, TimeoutSeconds: 5,
			},
		}},
	}
	if len(o.CACerts) > 0 {
		// Istio's plug-in CA: the cacerts Secret mounted at /etc/cacerts.
		spec.Volumes = []corev1.Volume{{Name: "cacerts", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: CACertsSecret}}}}
		spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cacerts", MountPath: "/etc/cacerts", ReadOnly: true}}
		spec.Containers[0].Args = append(spec.Containers[0].Args, "--cacerts", "/etc/cacerts")
	}
	if len(o.AdminCredential) > 0 {
		// The host's credential works against istiod in the cluster too.
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "admin-credential", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: AdminCredentialSecret}}})
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "admin-credential", MountPath: "/etc/skein/credential", ReadOnly: true})
		spec.Containers[0].Args = append(spec.Containers[0].Args, "--credential-file", "/etc/skein/credential/admin-token")
	}
	one := int32(1)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: IstiodName, Namespace: SystemNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: copyMap(istiodLabels)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{
					"prometheus.io/scrape": "true", "prometheus.io/port": "15014", inject.KeyInject: "false",
				}},
				Spec: spec,
			},
		},
	}
}

// webhook is Istio's default-revision injector configuration: four
// webhooks covering istio-injection=enabled namespaces, istio.io/rev
// namespaces and pods, and pods labelled sidecar.istio.io/inject=true in
// unlabelled namespaces — the same rules as inject.ModeFor.
func (o *Options) webhook() *admissionregv1.MutatingWebhookConfiguration {
	rev := o.revision()
	client := admissionregv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.ExternalDiscovery != "" {
		host, _, _ := net.SplitHostPort(o.ExternalDiscovery)
		url := fmt.Sprintf("https://%s/inject", net.JoinHostPort(host, fmt.Sprint(WebhookPort)))
		client.URL = &url
	} else {
		path := "/inject"
		port := int32(443)
		client.Service = &admissionregv1.ServiceReference{Name: IstiodName, Namespace: SystemNamespace, Path: &path, Port: &port}
	}
	fail := admissionregv1.Fail
	none := admissionregv1.SideEffectClassNone
	never := admissionregv1.NeverReinvocationPolicy
	timeout := int32(10)
	rules := []admissionregv1.RuleWithOperations{{
		Operations: []admissionregv1.OperationType{admissionregv1.Create},
		Rule:       admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}
	req := func(key string, op metav1.LabelSelectorOperator, vals ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: vals}
	}
	hook := func(name string, ns, obj []metav1.LabelSelectorRequirement) admissionregv1.MutatingWebhook {
		return admissionregv1.MutatingWebhook{
			Name: name, ClientConfig: client, Rules: rules,
			FailurePolicy: &fail, SideEffects: &none, ReinvocationPolicy: &never, TimeoutSeconds: &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: ns},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: obj},
		}
	}
	notFalse := req(inject.KeyInject, metav1.LabelSelectorOpNotIn, "false")
	return &admissionregv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookName, Labels: map[string]string{
			"app": "sidecar-injector", "istio.io/rev": rev, labelManagedBy: managedBySkein,
		}},
		Webhooks: []admissionregv1.MutatingWebhook{
			hook("rev.namespace.sidecar-injector.istio.io",
				[]metav1.LabelSelectorRequirement{req(inject.LabelRevision, metav1.LabelSelectorOpIn, rev), req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist)},
				[]metav1.LabelSelectorRequirement{notFalse}),
			hook("rev.object.sidecar-injector.istio.io",
				[]metav1.LabelSelectorRequirement{req(inject.LabelRevision, metav1.LabelSelectorOpDoesNotExist), req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist)},
				[]metav1.LabelSelectorRequirement{notFalse, req(inject.LabelRevision, metav1.LabelSelectorOpIn, rev)}),
			hook("namespace.sidecar-injector.istio.io",
				[]metav1.LabelSelectorRequirement{req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpIn, "enabled")},
				[]metav1.LabelSelectorRequirement{notFalse}),
			hook("object.sidecar-injector.istio.io",
				[]metav1.LabelSelectorRequirement{req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist), req(inject.LabelRevision, metav1.LabelSelectorOpDoesNotExist)},
				[]metav1.LabelSelectorRequirement{req(inject.KeyInject, metav1.LabelSelectorOpIn, "true"), req(inject.LabelRevision, metav1.LabelSelectorOpDoesNotExist)}),
		},
	}
}

// toUnstructured converts a typed object or a map to unstructured,
// without the null creationTimestamp and empty status typed objects carry.
func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	var m map[string]any
	switch o := obj.(type) {
	case map[string]any:
		m = o
	default:
		var err error
		if m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			return nil, err
		}
	}
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	if st, ok := m["status"].(map[string]any); ok && len(st) == 0 {
		delete(m, "status")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			if meta, ok := tmpl["metadata"].(map[string]any); ok {
				delete(meta, "creationTimestamp")
			}
		}
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
