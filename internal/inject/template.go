package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// DefaultProxyImage is the image the repository's Dockerfile builds: the
// skein binary on PATH, so `command: [skein]` runs it (the node agent and
// the local runner map the command "skein" to their own binary instead).
const DefaultProxyImage = "skein/skein:latest"

// Ports and paths of an injected proxy (Istio's numbers).
const (
	OutboundPort        = 15001
	MergedMetricsPort   = 15020 // the sidecar's merged Prometheus endpoint (proxy + app)
	HealthPort          = 15021
	EnvoyPrometheusPort = 15090
	ReadyPath           = "/healthz/ready"
	StatsPath           = "/stats/prometheus"
	// TokenDir and TokenPath are where the projected service-account token
	// (audience istio-ca) is mounted and read by `skein proxy --token-file`.
	TokenDir      = "/var/run/secrets/tokens"
	TokenPath     = TokenDir + "/istio-token"
	TokenAudience = "istio-ca"
	tokenVolume   = "istio-token"
)

// Istio's labels the injector adds to every injected pod.
const (
	LabelTLSMode           = "security.istio.io/tlsMode"
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
)

// Prometheus annotations and Istio's metrics-merge switch.
const (
	annoPromScrape   = "prometheus.io/scrape"
	annoPromPort     = "prometheus.io/port"
	annoPromPath     = "prometheus.io/path"
	annoMergeMetrics = "prometheus.istio.io/merge-metrics"
	annoDefaultCtr   = "kubectl.kubernetes.io/default-container"
	annoDefaultLogs  = "kubectl.kubernetes.io/default-logs-container"
	envPromAnnos     = "ISTIO_PROMETHEUS_ANNOTATIONS"
)

// Params are the injector's settings (Istio's values.global.* and the
// mesh config): where proxies find the control plane and who they are.
type Params struct {
	ProxyImage       string // default DefaultProxyImage
	DiscoveryAddress string // xDS host:port; default istiod.istio-system.svc:15010
	CAAddress        string // CA gRPC host:port; default: the discovery address
	TrustDomain      string // default cluster.local
	ClusterID        string // default Kubernetes
	MeshID           string // default: the trust domain, as in Istio
	LogLevel         string // proxy log level; empty: the proxy's default
	Revision         string // control plane revision; default "default"
	// Config is the istio-sidecar-injector configuration (policy,
	// selectors, templates, values); nil: Istio's defaults.
	Config *Config
}

// DefaultDiscoveryAddress is istiod's in-cluster xDS address. Skein serves
// xDS and the CA in plaintext on 15010 (Istio's 15012 is TLS).
const DefaultDiscoveryAddress = "istiod.istio-system.svc:15010"

func (p Params) withDefaults() Params {
	if p.ProxyImage == "" {
		p.ProxyImage = DefaultProxyImage
	}
	if p.DiscoveryAddress == "" {
		p.DiscoveryAddress = DefaultDiscoveryAddress
	}
	if p.TrustDomain == "" {
		p.TrustDomain = "cluster.local"
	}
	if p.ClusterID == "" {
		p.ClusterID = "Kubernetes"
	}
	if p.MeshID == "" {
		p.MeshID = p.TrustDomain
	}
	if p.Revision == "" {
		p.Revision = "default"
	}
	return p
}

// Target is the pod (or pod template) to inject and its surroundings.
type Target struct {
	Namespace       string
	NamespaceLabels map[string]string
	// WorkloadName names the owning workload (Deployment, StatefulSet, ...;
	// the pod itself when it has none): the canonical-name fallback and the
	// proxy's WORKLOAD_NAME.
	WorkloadName string
	// WorkloadKind and WorkloadAPIVersion name the owner for ISTIO_META_OWNER
	// (empty: a bare Pod).
	WorkloadKind, WorkloadAPIVersion string
}

// Template injects t in place, as Istio's injector would for a pod created
// from it. It returns the proxy mode chosen (None: t is unchanged, either
// because the policy says no or because t is already injected, see
// Injected). Errors name the annotation or field that is wrong.
func Template(t *corev1.PodTemplateSpec, target Target, params Params) (Mode, error) {
	if Injected(&t.ObjectMeta) {
		return None, nil
	}
	mode := ModeFor(Decision{
		Namespace: target.Namespace, NamespaceLabels: target.NamespaceLabels,
		PodLabels: t.Labels, PodAnnotations: t.Annotations, HostNetwork: t.Spec.HostNetwork,
		Config: params.Config,
	})
	if mode == None {
		return None, nil
	}
	original := t.DeepCopy()
	p := params.withValues().withDefaults()
	if img := t.Annotations[AnnotationProxyImage]; img != "" {
		p.ProxyImage = img
	}
	proxyConfig, err := parseProxyConfig(t.Annotations[AnnotationProxyConfig])
	if err != nil {
		return None, err
	}
	if a := proxyConfig.GetDiscoveryAddress(); a != "" {
		p.DiscoveryAddress = a
	}
	if target.WorkloadName == "" {
		target.WorkloadName = firstNonEmpty(t.Name, strings.TrimSuffix(t.GenerateName, "-"))
	}

	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	CanonicalLabels(t.Labels, target.WorkloadName, mode)
	promEnv, err := mergePrometheus(t.Annotations)
	if err != nil {
		return None, err
	}

	apps := appContainerNames(&t.Spec)
	if len(apps) > 0 {
		setDefault(t.Annotations, annoDefaultCtr, apps[0])
		setDefault(t.Annotations, annoDefaultLogs, apps[0])
	}
	setDefault(t.Annotations, LabelRevision, p.Revision)

	proxy := proxyContainer(&t.Spec, t.Labels, target, p, mode, proxyConfig, promEnv)
	if mode == Sidecar {
		for i := range t.Spec.Containers {
			if t.Spec.Containers[i].Name != ProxyContainerName {
				t.Spec.Containers[i].Env = captureEnv(t.Spec.Containers[i].Env)
			}
		}
	}
	if err := proxyResources(&proxy, p.Config, t.Annotations); err != nil {
		return None, err
	}
	if p.Config != nil && p.Config.Proxy.Privileged {
		priv := true
		if proxy.SecurityContext == nil {
			proxy.SecurityContext = &corev1.SecurityContext{}
		}
		proxy.SecurityContext.Privileged = &priv
	}
	replaceOrAppend(&t.Spec.Containers, proxy)
	if p.Config != nil && p.Config.Proxy.HoldApplicationUntilProxyStarts {
		proxyFirst(&t.Spec)
	}
	addTokenVolume(&t.Spec)
	if p.Config != nil {
		for k, v := range p.Config.InjectedAnnotations {
			t.Annotations[k] = v
		}
		if err := p.Config.overlay(t, mode, original, p.Revision); err != nil {
			return None, err
		}
	}
	t.Annotations[AnnotationStatus] = Status(mode, p.Revision)
	return mode, nil
}

// Injected reports whether a pod (template) already went through an
// injector: Istio's status annotation is its mark.
func Injected(meta *metav1.ObjectMeta) bool {
	_, ok := meta.Annotations[AnnotationStatus]
	return ok
}

// Status is the sidecar.istio.io/status annotation Istio writes: what the
// injection added, so tools (and uninjection) can find it.
func Status(mode Mode, revision string) string {
	tmpl := SidecarTemplate
	if mode == Gateway {
		tmpl = GatewayTemplate
	}
	if revision == "" {
		revision = "default"
	}
	// Field order as Istio's; encoding/json keeps struct order.
	b, _ := json.Marshal(struct {
		InitContainers   []string `json:"initContainers"`
		Containers       []string `json:"containers"`
		Volumes          []string `json:"volumes"`
		ImagePullSecrets []string `json:"imagePullSecrets"`
		Revision         string   `json:"revision"`
		Templates        []string `json:"templates"`
	}{nil, []string{ProxyContainerName}, []string{tokenVolume}, nil, revision, []string{tmpl}})
	return string(b)
}

// CanonicalLabels adds the labels Istio's injection templates put on a pod:
// the canonical service name and revision (telemetry, workload identity)
// and, for sidecars, the TLS mode endpoints advertise. Labels already set
// win.
func CanonicalLabels(labels map[string]string, workload string, mode Mode) {
	if mode == Sidecar {
		setDefault(labels, LabelTLSMode, "istio")
	}
	setDefault(labels, LabelCanonicalName, firstNonEmpty(labels["app.kubernetes.io/name"], labels["app"], workload))
	setDefault(labels, LabelCanonicalRevision, firstNonEmpty(labels["app.kubernetes.io/version"], labels["version"], "latest"))
}

// parseProxyConfig reads the proxy.istio.io/config annotation (ProxyConfig
// YAML or JSON).
func parseProxyConfig(s string) (*meshv1alpha1.ProxyConfig, error) {
	pc := &meshv1alpha1.ProxyConfig{}
	if strings.TrimSpace(s) == "" {
		return pc, nil
	}
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %v", AnnotationProxyConfig, err)
	}
	if err := protojson.Unmarshal(j, pc); err != nil {
		return nil, fmt.Errorf("annotation %s: %v", AnnotationProxyConfig, err)
	}
	return pc, nil
}

// promAnnotations is Istio's ISTIO_PROMETHEUS_ANNOTATIONS value: the app's
// own scrape settings, which the merged endpoint on 15020 scrapes too.
type promAnnotations struct {
	Scrape string `json:"scrape"`
	Path   string `json:"path"`
	Port   string `json:"port"`
}

// mergePrometheus points the pod's prometheus.io annotations at the
// proxy's merged endpoint and returns the app's previous ones as the
// ISTIO_PROMETHEUS_ANNOTATIONS value ("" when the app had none). As in
// Istio, a pod that opted out of scraping (scrape "false") or of merging
// (prometheus.istio.io/merge-metrics "false") keeps its annotations.
func mergePrometheus(a map[string]string) (string, error) {
	if v, ok := a[annoMergeMetrics]; ok {
		merge, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("annotation %s: %q is not a boolean", annoMergeMetrics, v)
		}
		if !merge {
			return "", nil
		}
	}
	if v, ok := a[annoPromScrape]; ok {
		if scrape, err := strconv.ParseBool(v); err == nil && !scrape {
			return "", nil
		}
	}
	var env string
	if a[annoPromScrape] != "" || a[annoPromPort] != "" || a[annoPromPath] != "" {
		b, _ := json.Marshal(promAnnotations{Scrape: a[annoPromScrape], Path: a[annoPromPath], Port: a[annoPromPort]})
		env = string(b)
	}
	a[annoPromScrape] = "true"
	a[annoPromPort] = strconv.Itoa(MergedMetricsPort)
	a[annoPromPath] = StatsPath
	return env, nil
}

// appContainerNames are the pod's own containers (the gateway's istio-proxy
// container is the proxy's, not an app's).
func appContainerNames(spec *corev1.PodSpec) []string {
	var names []string
	for _, c := range spec.Containers {
		if c.Name == ProxyContainerName {
			continue
		}
		names = append(names, c.Name)
	}
	return names
}

// captureEnv sends an app container's HTTP traffic through the sidecar, as
// the local runner does: HTTP_PROXY at the sidecar's outbound port on the
// pod IP. The variables come first so that the container's own definitions
// win, as they do locally.
func captureEnv(env []corev1.EnvVar) []corev1.EnvVar {
	proxy := fmt.Sprintf("http://$(INSTANCE_IP):%d", OutboundPort)
	out := []corev1.EnvVar{
		{Name: "INSTANCE_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "HTTP_PROXY", Value: proxy},
		{Name: "http_proxy", Value: proxy},
	}
	for _, e := range env {
		switch e.Name {
		case "INSTANCE_IP", "HTTP_PROXY", "http_proxy":
			// The app's own value replaces ours (keep one definition).
			for i := range out {
				if out[i].Name == e.Name {
					out[i] = e
				}
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// proxyContainer builds the istio-proxy container. A container of that
// name in the pod (the gateway template's image: auto, or a sidecar's
// overrides) keeps the fields the template does not set.
func proxyContainer(spec *corev1.PodSpec, labels map[string]string, target Target, p Params, mode Mode, pc *meshv1alpha1.ProxyConfig, promEnv string) corev1.Container {
	c := corev1.Container{}
	for _, existing := range spec.Containers {
		if existing.Name == ProxyContainerName {
			c = *existing.DeepCopy()
		}
	}
	c.Name = ProxyContainerName
	if c.Image == "" || c.Image == "auto" || mode == Sidecar {
		c.Image = p.ProxyImage
	}
	verb := "sidecar"
	if mode == Gateway {
		verb = "router"
	}
	c.Command = []string{"skein"}
	c.Args = []string{"proxy", verb,
		"--discovery-address", p.DiscoveryAddress,
		"--token-file", TokenPath,
		"--cluster-id", p.ClusterID,
		"--workload-name", target.WorkloadName,
		"--labels", formatLabels(labels),
	}

	pcJSON := "{}"
	if b, err := protojson.Marshal(pc); err == nil && len(b) > 0 {
		// protojson varies its spacing between builds; compact it so the
		// pod spec (and goldens) are stable.
		var buf bytes.Buffer
		if json.Compact(&buf, b) == nil {
			b = buf.Bytes()
		}
		pcJSON = string(b)
	}
	ports, _ := json.Marshal(appPorts(spec))
	owner := ""
	if target.WorkloadKind != "" {
		owner = fmt.Sprintf("kubernetes://apis/%s/namespaces/%s/%ss/%s",
			target.WorkloadAPIVersion, target.Namespace, strings.ToLower(target.WorkloadKind), target.WorkloadName)
	}
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "POD_NAMESPACE", ValueFrom: fieldRef("metadata.namespace")},
		{Name: "INSTANCE_IP", ValueFrom: fieldRef("status.podIP")},
		// The proxy reads its listen address from POD_IP.
		{Name: "POD_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "SERVICE_ACCOUNT", ValueFrom: fieldRef("spec.serviceAccountName")},
		{Name: "HOST_IP", ValueFrom: fieldRef("status.hostIP")},
		{Name: "CA_ADDR", Value: firstNonEmpty(p.CAAddress, p.DiscoveryAddress)},
		{Name: "TRUST_DOMAIN", Value: p.TrustDomain},
		{Name: "PROXY_CONFIG", Value: pcJSON},
		{Name: "ISTIO_META_POD_PORTS", Value: string(ports)},
		{Name: "ISTIO_META_APP_CONTAINERS", Value: strings.Join(appContainerNames(spec), ",")},
		{Name: "ISTIO_META_CLUSTER_ID", Value: p.ClusterID},
		{Name: "ISTIO_META_INTERCEPTION_MODE", Value: "NONE"},
		{Name: "ISTIO_META_WORKLOAD_NAME", Value: target.WorkloadName},
		{Name: "ISTIO_META_OWNER", Value: owner},
		{Name: "ISTIO_META_MESH_ID", Value: p.MeshID},
	}
	if promEnv != "" {
		env = append(env, corev1.EnvVar{Name: envPromAnnos, Value: promEnv})
	}
	if p.LogLevel != "" {
		env = append(env, corev1.EnvVar{Name: "SKEIN_LOG_LEVEL", Value: p.LogLevel})
	}
	c.Env = mergeEnv(env, c.Env)
	c.Ports = mergePorts(c.Ports,
		corev1.ContainerPort{Name: "http-envoy-prom", ContainerPort: EnvoyPrometheusPort, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "http-health", ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP},
	)
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: ReadyPath, Port: intstr.FromInt32(HealthPort),
		}},
		PeriodSeconds: 15, TimeoutSeconds: 3, FailureThreshold: 4,
	}
	if !hasMount(c.VolumeMounts, tokenVolume) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: tokenVolume, MountPath: TokenDir})
	}
	return c
}

// appPorts are the app containers' ports (ISTIO_META_POD_PORTS).
func appPorts(spec *corev1.PodSpec) []corev1.ContainerPort {
	ports := []corev1.ContainerPort{}
	for _, c := range spec.Containers {
		if c.Name != ProxyContainerName {
			ports = append(ports, c.Ports...)
		}
	}
	return ports
}

// mergeEnv is the template's variables with the existing container's own
// appended when the template does not define them (template wins, as the
// proxy depends on them).
func mergeEnv(tmpl, own []corev1.EnvVar) []corev1.EnvVar {
	defined := map[string]bool{}
	for _, e := range tmpl {
		defined[e.Name] = true
	}
	for _, e := range own {
		if !defined[e.Name] {
			tmpl = append(tmpl, e)
		}
	}
	return tmpl
}

func mergePorts(own []corev1.ContainerPort, add ...corev1.ContainerPort) []corev1.ContainerPort {
	for _, a := range add {
		found := false
		for _, o := range own {
			if o.ContainerPort == a.ContainerPort {
				found = true
			}
		}
		if !found {
			own = append(own, a)
		}
	}
	return own
}

func hasMount(mounts []corev1.VolumeMount, name string) bool {
	for _, m := range mounts {
		if m.Name == name {
			return true
		}
	}
	return false
}

// addTokenVolume adds the projected service-account token the proxy sends
// to the CA (audience istio-ca, as Istio's third-party JWT policy).
func addTokenVolume(spec *corev1.PodSpec) {
	for _, v := range spec.Volumes {
		if v.Name == tokenVolume {
			return
		}
	}
	expiry := int64(43200)
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name: tokenVolume,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: &expiry, Path: "istio-token",
			}}},
		}},
	})
}

func replaceOrAppend(cs *[]corev1.Container, c corev1.Container) {
	for i := range *cs {
		if (*cs)[i].Name == c.Name {
			(*cs)[i] = c
			return
		}
	}
	*cs = append(*cs, c)
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
}

// formatLabels renders labels as sorted k=v pairs joined by commas (the
// proxy's --labels).
func formatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
