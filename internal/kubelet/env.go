package kubelet

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// EnvVar is one variable a pod defines for a container, in declaration order.
type EnvVar struct {
	Name, Value string
}

// Identity is what the downward API (fieldRef) and the runner's own
// variables expose to a container.
type Identity struct {
	Name, Namespace, UID string
	ServiceAccount       string
	NodeName             string
	Labels, Annotations  map[string]string
	PodIP, AppIP         netip.Addr
	HostIP               string
	Sidecar              bool // the pod's traffic goes through a sidecar
}

// ConfigMapLookup returns a ConfigMap's data, or found=false when the
// ConfigMap does not exist.
type ConfigMapLookup func(namespace, name string) (data map[string]string, found bool, err error)

// outboundProxyPort is the sidecar's virtualOutbound port; locally apps reach
// it as an HTTP forward proxy.
const outboundProxyPort = 15001

// RunnerEnv are the variables every container gets from the runner (see
// docs/architecture.md, "Local mode"). SKEIN_APP_IP is where the app should
// listen: the app IP with a sidecar, the pod IP without.
func RunnerEnv(p Identity) []EnvVar {
	appIP := p.PodIP
	if p.AppIP.IsValid() {
		appIP = p.AppIP
	}
	vars := []EnvVar{
		{"POD_IP", p.PodIP.String()},
		{"POD_NAME", p.Name},
		{"POD_NAMESPACE", p.Namespace},
		{"SERVICE_ACCOUNT", p.ServiceAccount},
		{"SKEIN_APP_IP", appIP.String()},
	}
	if p.Sidecar {
		proxy := fmt.Sprintf("http://%s:%d", p.PodIP, outboundProxyPort)
		vars = append(vars, EnvVar{"HTTP_PROXY", proxy}, EnvVar{"http_proxy", proxy})
	}
	return vars
}

// ContainerEnv resolves the variables a container defines, in Kubernetes
// order: the runner's, then envFrom, then env (later wins). Values of env
// entries may reference earlier variables with $(NAME).
func ContainerEnv(p Identity, c *corev1.Container, configMaps ConfigMapLookup) ([]EnvVar, error) {
	vars := RunnerEnv(p)
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			data, found, err := configMaps(p.Namespace, src.ConfigMapRef.Name)
			if err != nil {
				return nil, fmt.Errorf("envFrom configMapRef %q: %w", src.ConfigMapRef.Name, err)
			}
			if !found {
				if isOptional(src.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom: configmap %q not found in namespace %q", src.ConfigMapRef.Name, p.Namespace)
			}
			for _, k := range slices.Sorted(maps.Keys(data)) {
				vars = append(vars, EnvVar{src.Prefix + k, data[k]})
			}
		case src.SecretRef != nil:
			if isOptional(src.SecretRef.Optional) {
				continue
			}
			return nil, fmt.Errorf("envFrom secretRef %q: Secrets are not supported by the local runner", src.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			vars = append(vars, EnvVar{e.Name, ExpandVars(e.Value, EnvLookup(vars))})
			continue
		}
		v, skip, err := resolveValueFrom(p, e.ValueFrom, configMaps)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if !skip {
			vars = append(vars, EnvVar{e.Name, v})
		}
	}
	return vars, nil
}

// resolveValueFrom evaluates one env valueFrom; skip reports an optional
// reference to a missing key, which Kubernetes leaves undefined.
func resolveValueFrom(p Identity, src *corev1.EnvVarSource, configMaps ConfigMapLookup) (value string, skip bool, err error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldRefValue(p, src.FieldRef.FieldPath)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		data, found, err := configMaps(p.Namespace, ref.Name)
		if err != nil {
			return "", false, fmt.Errorf("configMapKeyRef %q: %w", ref.Name, err)
		}
		v, ok := data[ref.Key]
		switch {
		case found && ok:
			return v, false, nil
		case isOptional(ref.Optional):
			return "", true, nil
		case !found:
			return "", false, fmt.Errorf("configmap %q not found in namespace %q", ref.Name, p.Namespace)
		default:
			return "", false, fmt.Errorf("configmap %s/%s has no key %q", p.Namespace, ref.Name, ref.Key)
		}
	case src.SecretKeyRef != nil:
		if isOptional(src.SecretKeyRef.Optional) {
			return "", true, nil
		}
		return "", false, fmt.Errorf("secretKeyRef %q: Secrets are not supported by the local runner", src.SecretKeyRef.Name)
	case src.ResourceFieldRef != nil:
		return "", false, fmt.Errorf("resourceFieldRef %q is not supported by the local runner (no resource limits locally)", src.ResourceFieldRef.Resource)
	}
	return "", false, fmt.Errorf("valueFrom names no source")
}

var fieldRefMapKey = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']*)'\]$`)

// fieldRefValue implements the downward API paths Kubernetes allows in env.
// status.podIP is the pod IP, the address the mesh knows the pod by; apps
// that need their listen address use SKEIN_APP_IP.
func fieldRefValue(p Identity, path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return p.UID, nil
	case "spec.nodeName":
		return p.NodeName, nil
	case "spec.serviceAccountName":
		return p.ServiceAccount, nil
	case "status.hostIP", "status.hostIPs":
		return p.HostIP, nil
	case "status.podIP", "status.podIPs":
		return p.PodIP.String(), nil
	}
	if m := fieldRefMapKey.FindStringSubmatch(path); m != nil {
		if m[1] == "labels" {
			return p.Labels[m[2]], nil
		}
		return p.Annotations[m[2]], nil
	}
	return "", fmt.Errorf("fieldRef: unsupported fieldPath %q (supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.podIP)", path)
}

func isOptional(b *bool) bool { return b != nil && *b }

// ProcessEnv builds a process environment: the runner's own environment (so
// PATH, HOME and friends work), minus variables the pod must not inherit,
// then the pod's variables, which win.
func ProcessEnv(host []string, defined []EnvVar, drop []string) []string {
	skip := map[string]bool{}
	for _, d := range drop {
		skip[d] = true
	}
	last := map[string]string{}
	var order []string
	for _, v := range defined {
		if _, seen := last[v.Name]; !seen {
			order = append(order, v.Name)
		}
		last[v.Name] = v.Value
	}
	env := make([]string, 0, len(host)+len(order))
	for _, kv := range host {
		name, _, _ := strings.Cut(kv, "=")
		if skip[name] {
			continue
		}
		if _, overridden := last[name]; overridden {
			continue
		}
		env = append(env, kv)
	}
	for _, name := range order {
		env = append(env, name+"="+last[name])
	}
	return env
}

// SidecarDropEnv are host variables a sidecar-injected app must not inherit:
// NO_PROXY would let traffic bypass the sidecar.
var SidecarDropEnv = []string{"NO_PROXY", "no_proxy"}
