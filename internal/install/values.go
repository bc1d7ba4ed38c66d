package install

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
)

// Sources are where istioctl takes install settings from, in the order
// they apply: IstioOperator files (-f), then --set, then --set-file.
type Sources struct {
	Files    []string // IstioOperator YAML files
	Sets     []string // key=value
	SetFiles []string // key=path: the file's content is the value
}

// ParseSet reads --set settings alone.
func ParseSet(sets []string) (Values, error) { return Parse(Sources{Sets: sets}) }

// Parse builds the IstioOperator spec from its sources, checks every key
// against the settings Skein honours (refusing unknown ones with the
// nearest known key) and extracts Values.
func Parse(src Sources) (Values, error) {
	spec := map[string]any{}
	for _, f := range src.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Values{}, err
		}
		var iop struct {
			APIVersion string         `json:"apiVersion"`
			Kind       string         `json:"kind"`
			Spec       map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(b, &iop); err != nil {
			return Values{}, fmt.Errorf("%s: %v", f, err)
		}
		if iop.Kind != "IstioOperator" {
			return Values{}, fmt.Errorf("%s: kind %q: want an IstioOperator (install.istio.io/v1alpha1)", f, iop.Kind)
		}
		mergeMaps(spec, iop.Spec)
	}
	for _, s := range src.Sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok || key == "" {
			return Values{}, fmt.Errorf("--set %q: want key=value", s)
		}
		if err := setKey(spec, key, parseScalar(val)); err != nil {
			return Values{}, fmt.Errorf("--set %s: %v", key, err)
		}
	}
	for _, s := range src.SetFiles {
		key, path, ok := strings.Cut(s, "=")
		if !ok || key == "" || path == "" {
			return Values{}, fmt.Errorf("--set-file %q: want key=path", s)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return Values{}, fmt.Errorf("--set-file %s: %v", key, err)
		}
		if err := setKey(spec, key, string(b)); err != nil {
			return Values{}, fmt.Errorf("--set-file %s: %v", key, err)
		}
	}
	if err := checkKeys(spec, ""); err != nil {
		return Values{}, err
	}
	return valuesFrom(spec)
}

// setKey sets a dotted key ("a.b[0].c", "\." escapes a dot) in tree.
func setKey(tree map[string]any, key string, val any) error {
	segs := splitKey(key)
	var cur any = tree
	for i, seg := range segs {
		last := i == len(segs)-1
		name, idx, err := splitIndex(seg)
		if err != nil {
			return err
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is already set to a value", strings.Join(segs[:i], "."))
		}
		if name == "" {
			return fmt.Errorf("empty path element")
		}
		if idx < 0 {
			if last {
				m[name] = val
				return nil
			}
			next, ok := m[name].(map[string]any)
			if !ok {
				if _, exists := m[name]; exists {
					return fmt.Errorf("%s is already set to a value", strings.Join(segs[:i+1], "."))
				}
				next = map[string]any{}
				m[name] = next
			}
			cur = next
			continue
		}
		list, _ := m[name].([]any)
		if _, exists := m[name]; exists && list == nil {
			return fmt.Errorf("%s is not a list", strings.Join(segs[:i], ".")+name)
		}
		for len(list) <= idx {
			list = append(list, nil)
		}
		if last {
			list[idx] = val
			m[name] = list
			return nil
		}
		next, ok := list[idx].(map[string]any)
		if !ok {
			next = map[string]any{}
			list[idx] = next
		}
		m[name] = list
		cur = next
	}
	return nil
}

func splitKey(key string) []string {
	var (
		segs []string
		cur  strings.Builder
	)
	for i := 0; i < len(key); i++ {
		switch {
		case key[i] == '\\' && i+1 < len(key) && key[i+1] == '.':
			cur.WriteByte('.')
			i++
		case key[i] == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(key[i])
		}
	}
	return append(segs, cur.String())
}

// splitIndex parses "name[3]" into ("name", 3); -1 without an index.
func splitIndex(seg string) (string, int, error) {
	i := strings.IndexByte(seg, '[')
	if i < 0 || !strings.HasSuffix(seg, "]") {
		return seg, -1, nil
	}
	n, err := strconv.Atoi(seg[i+1 : len(seg)-1])
	if err != nil || n < 0 || n > 1000 {
		return "", 0, fmt.Errorf("%q: bad list index", seg)
	}
	return seg[:i], n, nil
}

// knownKeys are the IstioOperator settings Skein honours; a trailing ".*"
// accepts anything below (free-form maps such as resources and env). List
// indices are written [].
var knownKeys = []string{
	"profile", "revision", "hub", "tag", "namespace",
	"meshConfig.*",
	"values.defaultRevision", "values.revision",
	"values.global.hub", "values.global.tag", "values.global.trustDomain", "values.global.meshID",
	"values.global.multiCluster.clusterName", "values.global.logging.level", "values.global.istioNamespace",
	"values.global.imagePullPolicy",
	"values.global.proxy.image", "values.global.proxy.logLevel", "values.global.proxy.componentLogLevel",
	"values.global.proxy.privileged", "values.global.proxy.holdApplicationUntilProxyStarts",
	"values.global.proxy.autoInject", "values.global.proxy.resources.*",
	"values.global.proxy_init.image", "values.global.proxy_init.resources.*",
	"values.pilot.resources.*", "values.pilot.env.*", "values.pilot.replicaCount",
	"values.pilot.autoscaleEnabled", "values.pilot.autoscaleMin", "values.pilot.autoscaleMax",
	"values.pilot.cpu.targetAverageUtilization", "values.pilot.podAnnotations.*", "values.pilot.nodeSelector.*",
	"values.sidecarInjectorWebhook.neverInjectSelector.*", "values.sidecarInjectorWebhook.alwaysInjectSelector.*",
	"values.sidecarInjectorWebhook.injectedAnnotations.*", "values.sidecarInjectorWebhook.templates.*",
	"values.sidecarInjectorWebhook.defaultTemplates.*",
	"components.base.enabled", "components.pilot.enabled",
	"components.pilot.k8s.resources.*", "components.pilot.k8s.replicaCount", "components.pilot.k8s.hpaSpec.*",
	"components.pilot.k8s.env.*", "components.pilot.k8s.podAnnotations.*", "components.pilot.k8s.nodeSelector.*",
}

func init() {
	for _, g := range []string{"istio-ingressgateway", "istio-egressgateway"} {
		for _, k := range []string{"resources.*", "replicaCount", "autoscaleEnabled", "autoscaleMin", "autoscaleMax",
			"cpu.targetAverageUtilization", "type", "ports.*", "serviceAnnotations.*", "podAnnotations.*", "env.*"} {
			knownKeys = append(knownKeys, "values.gateways."+g+"."+k)
		}
	}
	for _, g := range []string{"ingressGateways", "egressGateways"} {
		for _, k := range []string{"enabled", "name", "namespace", "label.*", "k8s.resources.*", "k8s.replicaCount", "k8s.hpaSpec.*",
			"k8s.service.*", "k8s.env.*", "k8s.podAnnotations.*", "k8s.serviceAnnotations.*", "k8s.nodeSelector.*"} {
			knownKeys = append(knownKeys, "components."+g+"[]."+k)
		}
	}
}

// checkKeys walks tree and refuses a key no known setting covers.
func checkKeys(tree any, path string) error {
	switch t := tree.(type) {
	case map[string]any:
		if path != "" && covered(path) {
			return nil
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if err := checkKeys(t[k], p); err != nil {
				return err
			}
		}
		return nil
	case []any:
		if covered(path) {
			return nil
		}
		for _, v := range t {
			if err := checkKeys(v, path+"[]"); err != nil {
				return err
			}
		}
		return nil
	}
	if covered(path) {
		return nil
	}
	return fmt.Errorf("%s: not a setting Skein knows; did you mean %s?", path, nearestKey(path))
}

// covered reports whether a known key (or a free-form subtree) includes path.
func covered(path string) bool {
	for _, k := range knownKeys {
		if base, ok := strings.CutSuffix(k, ".*"); ok {
			if path == base || strings.HasPrefix(path, base+".") || strings.HasPrefix(path, base+"[]") {
				return true
			}
		} else if path == k {
			return true
		}
	}
	return false
}

func nearestKey(path string) string {
	best, bestD := "", -1
	for _, k := range knownKeys {
		k = strings.TrimSuffix(k, ".*")
		if d := config.EditDistance(path, k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	return strings.ReplaceAll(best, "[]", "[0]")
}

// get walks a dotted path ("a.b.c") of maps.
func get(tree map[string]any, path string) any {
	var cur any = tree
	for _, seg := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[seg]
	}
	return cur
}

func getString(tree map[string]any, path string) string {
	switch v := get(tree, path).(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func getMap(tree map[string]any, path string) map[string]any {
	m, _ := get(tree, path).(map[string]any)
	return m
}

// getBool reads a boolean setting; set is false when it is absent.
func getBool(tree map[string]any, path string) (val, set bool, err error) {
	switch v := get(tree, path).(type) {
	case nil:
		return false, false, nil
	case bool:
		return v, true, nil
	case string:
		b, err := parseBool(v)
		return b, true, err
	default:
		return false, true, fmt.Errorf("%s: %v is not true or false", path, v)
	}
}

func getInt(tree map[string]any, path string) (*int32, error) {
	switch v := get(tree, path).(type) {
	case nil:
		return nil, nil
	case float64:
		n := int32(v)
		return &n, nil
	case int:
		n := int32(v)
		return &n, nil
	case int64:
		n := int32(v)
		return &n, nil
	default:
		return nil, fmt.Errorf("%s: %v is not a number", path, v)
	}
}

// decodeInto converts a subtree to a typed value, naming the path on error.
func decodeInto(v any, path string, into any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// K8sSettings are a component's Kubernetes settings (components.X.k8s and
// the matching values.*).
type K8sSettings struct {
	Resources      *corev1.ResourceRequirements
	Replicas       *int32
	HPA            map[string]any // hpaSpec (autoscaling/v2 HorizontalPodAutoscalerSpec)
	Env            map[string]string
	PodAnnotations map[string]string
	ServiceType    corev1.ServiceType
	ServicePorts   []corev1.ServicePort
}

// readK8s merges values.<valuesPath> under components.<compPath>.k8s
// (the component settings win, as in istioctl).
func readK8s(spec map[string]any, valuesPath, compK8s map[string]any, name string) (K8sSettings, error) {
	var s K8sSettings
	pick := func(key string) (any, string) {
		if v, ok := compK8s[key]; ok {
			return v, "components." + name + ".k8s." + key
		}
		return nil, ""
	}
	if v, ok := valuesPath["resources"]; ok {
		s.Resources = &corev1.ResourceRequirements{}
		if err := decodeInto(v, "values resources of "+name, s.Resources); err != nil {
			return s, err
		}
	}
	if v, p := pick("resources"); v != nil {
		s.Resources = &corev1.ResourceRequirements{}
		if err := decodeInto(v, p, s.Resources); err != nil {
			return s, err
		}
	}
	rep, err := getInt(valuesPath, "replicaCount")
	if err != nil {
		return s, err
	}
	s.Replicas = rep
	if r, err := getInt(compK8s, "replicaCount"); err != nil {
		return s, err
	} else if r != nil {
		s.Replicas = r
	}
	if on, set, err := getBool(valuesPath, "autoscaleEnabled"); err != nil {
		return s, err
	} else if set && on {
		hpa := map[string]any{"minReplicas": 1, "maxReplicas": 5}
		if n, _ := getInt(valuesPath, "autoscaleMin"); n != nil {
			hpa["minReplicas"] = *n
		}
		if n, _ := getInt(valuesPath, "autoscaleMax"); n != nil {
			hpa["maxReplicas"] = *n
		}
		target := int32(80)
		if n, _ := getInt(valuesPath, "cpu.targetAverageUtilization"); n != nil {
			target = *n
		}
		hpa["metrics"] = []any{map[string]any{"type": "Resource", "resource": map[string]any{"name": "cpu",
			"target": map[string]any{"type": "Utilization", "averageUtilization": target}}}}
		s.HPA = hpa
	}
	if v, _ := pick("hpaSpec"); v != nil {
		s.HPA, _ = v.(map[string]any)
	}
	env := map[string]string{}
	for _, src := range []map[string]any{getMap(valuesPath, "env"), getMap(compK8s, "env")} {
		for k, v := range src {
			env[k] = fmt.Sprint(v)
		}
	}
	if len(env) > 0 {
		s.Env = env
	}
	annos := map[string]string{}
	for _, src := range []map[string]any{getMap(valuesPath, "podAnnotations"), getMap(compK8s, "podAnnotations")} {
		for k, v := range src {
			annos[k] = fmt.Sprint(v)
		}
	}
	if len(annos) > 0 {
		s.PodAnnotations = annos
	}
	if t := getString(valuesPath, "type"); t != "" {
		s.ServiceType = corev1.ServiceType(t)
	}
	if t := getString(compK8s, "service.type"); t != "" {
		s.ServiceType = corev1.ServiceType(t)
	}
	for _, src := range []struct {
		v    any
		path string
	}{{valuesPath["ports"], "values ports of " + name}, {get(compK8s, "service.ports"), "components." + name + ".k8s.service.ports"}} {
		if src.v == nil {
			continue
		}
		var ports []corev1.ServicePort
		if err := decodeInto(src.v, src.path, &ports); err != nil {
			return s, err
		}
		s.ServicePorts = ports
	}
	switch s.ServiceType {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		return s, fmt.Errorf("%s service type %q: want ClusterIP, NodePort or LoadBalancer", name, s.ServiceType)
	}
	_ = spec
	return s, nil
}

// profiles are Istio's component sets.
var profiles = map[string]struct{ ingress, egress, pilot bool }{
	"default": {ingress: true, pilot: true},
	"demo":    {ingress: true, egress: true, pilot: true},
	"minimal": {pilot: true},
	"empty":   {},
}

// valuesFrom extracts Values from a checked IstioOperator spec.
func valuesFrom(spec map[string]any) (Values, error) {
	v := Values{Profile: firstNonEmpty(getString(spec, "profile"), "default"), MeshConfig: map[string]any{}}
	prof, ok := profiles[v.Profile]
	if !ok {
		if v.Profile == "ambient" {
			return v, fmt.Errorf("profile=ambient: Skein runs sidecars and gateways; ambient mode (ztunnel, waypoints) is not supported (default, demo, minimal, empty)")
		}
		return v, fmt.Errorf("--set profile=%s: unknown profile (default, demo, minimal, empty)", v.Profile)
	}
	helm := getMap(spec, "values")
	if helm == nil {
		helm = map[string]any{}
	}
	if v.Profile == "demo" {
		// Istio's demo profile: access logs on, small sidecars.
		demo := map[string]any{"global": map[string]any{"proxy": map[string]any{"resources": map[string]any{
			"requests": map[string]any{"cpu": "10m", "memory": "40Mi"}}}}}
		mergeMaps(demo, helm)
		helm = demo
		v.MeshConfig["accessLogFile"] = "/dev/stdout"
	}
	v.Helm = helm
	mergeMaps(v.MeshConfig, getMap(spec, "meshConfig"))
	v.Revision = firstNonEmpty(getString(spec, "revision"), getString(helm, "revision"), getString(helm, "defaultRevision"))
	v.TrustDomain = firstNonEmpty(getString(v.MeshConfig, "trustDomain"), getString(helm, "global.trustDomain"))
	v.ClusterID = getString(helm, "global.multiCluster.clusterName")
	v.MeshID = getString(helm, "global.meshID")
	v.Hub = firstNonEmpty(getString(spec, "hub"), getString(helm, "global.hub"))
	v.Tag = firstNonEmpty(getString(spec, "tag"), getString(helm, "global.tag"))
	v.ProxyLogLevel = firstNonEmpty(getString(helm, "global.proxy.logLevel"), getString(helm, "global.logging.level"))
	v.Egress, v.NoIngress, v.NoPilot = prof.egress, !prof.ingress, !prof.pilot
	for _, g := range []struct {
		path string
		set  func(bool)
	}{
		{"components.ingressGateways", func(b bool) { v.NoIngress = !b }},
		{"components.egressGateways", func(b bool) { v.Egress = b }},
	} {
		list, _ := get(spec, g.path).([]any)
		if len(list) > 0 {
			first, _ := list[0].(map[string]any)
			if b, set, err := getBool(first, "enabled"); err != nil {
				return v, fmt.Errorf("%s[0].enabled: %v", g.path, err)
			} else if set {
				g.set(b)
			}
		}
	}
	if b, set, err := getBool(spec, "components.pilot.enabled"); err != nil {
		return v, fmt.Errorf("components.pilot.enabled: %v", err)
	} else if set {
		v.NoPilot = !b
	}
	var err error
	if v.Pilot, err = readK8s(spec, getMap(helm, "pilot"), getMap(spec, "components.pilot.k8s"), "pilot"); err != nil {
		return v, err
	}
	gw := func(list string, name string) (K8sSettings, error) {
		var k8s map[string]any
		if l, _ := get(spec, "components."+list).([]any); len(l) > 0 {
			first, _ := l[0].(map[string]any)
			k8s = getMap(first, "k8s")
		}
		gws := getMap(helm, "gateways")
		vals, _ := gws[name].(map[string]any)
		return readK8s(spec, vals, k8s, list+"[0]")
	}
	if v.IngressK8s, err = gw("ingressGateways", IngressName); err != nil {
		return v, err
	}
	if v.EgressK8s, err = gw("egressGateways", EgressName); err != nil {
		return v, err
	}
	return v, nil
}
