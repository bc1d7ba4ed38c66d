package config

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate runs the semantic checks Istio's (and the Kubernetes API
// server's) validation would, returning one *FieldError per problem.
func Validate(obj *Object) []error {
	errs, _ := ValidateAll(obj)
	return errs
}

// ValidateAll is Validate that also returns warnings: problems that do not
// stop the object from being applied, such as routes that can never match.
func ValidateAll(obj *Object) ([]error, []Warning) {
	if obj == nil {
		return []error{&FieldError{Message: "nil object"}}, nil
	}
	v := &validator{ctx: docContext{kind: obj.GVK.Kind, name: obj.Meta.Name}}
	if !v.meta(obj) {
		return v.errs, v.warns
	}
	switch s := obj.Spec.(type) {
	case *networking.Gateway:
		v.gateway(s)
	case *networking.VirtualService:
		v.virtualService(s)
	case *networking.DestinationRule:
		v.destinationRule(s)
	case *networking.ServiceEntry:
		v.serviceEntry(s)
	case *networking.WorkloadEntry:
		v.workloadEntry(s, "spec", false)
	case *networking.Sidecar:
		v.sidecar(s)
	case *networking.EnvoyFilter:
		v.envoyFilter(s)
	case *security.PeerAuthentication:
		v.peerAuthentication(s)
	case *security.AuthorizationPolicy:
		v.authorizationPolicy(s)
	case *security.RequestAuthentication:
		v.requestAuthentication(s)
	case *telemetry.Telemetry:
		v.telemetry(s)
	case *networking.WorkloadGroup:
		v.workloadGroup(s)
	case *networkingv1beta1.ProxyConfig:
		v.proxyConfig(s)
	case *extensions.WasmPlugin:
		v.wasmPlugin(s)
	case *extensions.TrafficExtension:
		v.trafficExtension(s)
	case *appsv1.Deployment:
		v.deployment(s)
	case *corev1.Pod:
		v.podSpec(&s.Spec, "spec")
	case *corev1.Service:
		v.service(s)
	default:
		v.storedOnly(obj)
	}
	return v.errs, v.warns
}

type validator struct {
	ctx   docContext
	errs  []error
	warns []Warning
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, v.ctx.fieldError(field, format, args...))
}

func (v *validator) warnf(field, format string, args ...any) {
	v.warns = append(v.warns, v.ctx.warning(field, format, args...))
}

// meta checks what every kind shares; false means the object is too broken
// for kind-specific checks.
func (v *validator) meta(obj *Object) bool {
	schema, ok := SchemaForGVK(obj.GVK.APIVersion(), obj.GVK.Kind)
	if !ok {
		v.errorf("kind", "unknown apiVersion %q / kind %q", obj.GVK.APIVersion(), obj.GVK.Kind)
		return false
	}
	want := schema.NewSpec()
	if obj.Spec == nil || fmt.Sprintf("%T", obj.Spec) != fmt.Sprintf("%T", want) {
		v.errorf("spec", "expected a %T body, got %T", want, obj.Spec)
		return false
	}
	switch {
	case obj.Meta.Name == "":
		v.errorf("metadata.name", "required field is missing")
	case obj.GVK.Kind == "Namespace":
		v.dnsLabel("metadata.name", obj.Meta.Name)
	default:
		for _, msg := range validation.IsDNS1123Subdomain(obj.Meta.Name) {
			v.errorf("metadata.name", "invalid name %q: %s", obj.Meta.Name, msg)
		}
	}
	switch {
	case schema.Namespaced && obj.Meta.Namespace == "":
		v.errorf("metadata.namespace", "required for namespaced kind %s", obj.GVK.Kind)
	case schema.Namespaced:
		v.dnsLabel("metadata.namespace", obj.Meta.Namespace)
	case obj.Meta.Namespace != "":
		v.errorf("metadata.namespace", "%s is cluster-scoped and cannot have a namespace", obj.GVK.Kind)
	}
	v.labels("metadata.labels", obj.Meta.Labels)
	return true
}

var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

func (v *validator) labels(field string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		name := k
		if prefix, rest, ok := strings.Cut(k, "/"); ok {
			name = rest
			if len(validation.IsDNS1123Subdomain(prefix)) > 0 {
				v.errorf(fmt.Sprintf("%s[%s]", field, k), "invalid label key prefix %q: must be a DNS subdomain", prefix)
			}
		}
		if name == "" || len(name) > 63 || !labelValueRE.MatchString(name) {
			v.errorf(fmt.Sprintf("%s[%s]", field, k), "invalid label key %q: must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric", k)
		}
		if val := labels[k]; len(val) > 63 || !labelValueRE.MatchString(val) {
			v.errorf(fmt.Sprintf("%s[%s]", field, k), "invalid label value %q: must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric", val)
		}
	}
}

func (v *validator) dnsLabel(field, value string) {
	for _, msg := range validation.IsDNS1123Label(value) {
		v.errorf(field, "invalid value %q: %s", value, msg)
	}
}

// hostname checks a DNS name that may start with a "*." wildcard (or be
// "*"), as Istio's ValidateWildcardDomain does. Short names ("reviews") are
// fine.
func (v *validator) hostname(field, host string) {
	switch {
	case host == "":
		v.errorf(field, "host must not be empty")
		return
	case host == "*":
		return
	case len(host) > 255:
		v.errorf(field, "host %q is longer than 255 characters", host)
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return
	}
	// Istio allows a wildcard only in the first label: "*", "*foo",
	// "*-foo" (a partial wildcard) or a plain label.
	for i, label := range strings.Split(host, ".") {
		if i == 0 && strings.HasPrefix(label, "*") {
			label = strings.TrimPrefix(strings.TrimPrefix(label, "*"), "-")
			if label == "" {
				continue
			}
		}
		if len(validation.IsDNS1123Label(strings.ToLower(label))) > 0 {
			v.errorf(field, "invalid host %q: each dot-separated part must be a DNS label (letters, digits, '-'), and a wildcard is allowed only at the start of the first", host)
			return
		}
	}
}

func (v *validator) port(field string, n uint32, required bool) {
	if n == 0 && !required {
		return
	}
	if n < 1 || n > 65535 {
		v.errorf(field, "port number %d is out of range 1-65535", n)
	}
}

// minDuration is Istio's floor for timeouts and intervals.
const minDuration = time.Millisecond

func (v *validator) duration(field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		v.errorf(field, "invalid duration: %v", err)
		return
	}
	if d.AsDuration() < minDuration {
		v.errorf(field, "duration %s is shorter than the minimum of 1ms", d.AsDuration())
	}
}

func (v *validator) percent(field string, p *networking.Percent) {
	if p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
		v.errorf(field, "percentage %v must be between 0 and 100", p.GetValue())
	}
}

func (v *validator) regex(field, re string) {
	if _, err := regexp.Compile(re); err != nil {
		v.errorf(field, "invalid regex %q (RE2 syntax): %s", re, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

// protocols Istio accepts for ports (case-insensitive).
var protocols = []string{"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP", "HBONE"}

func (v *validator) protocol(field, p string, required bool) {
	if p == "" {
		if required {
			v.errorf(field, "protocol is required (one of %s)", strings.Join(protocols, ", "))
		}
		return
	}
	if !contains(protocols, strings.ToUpper(p)) {
		v.errorf(field, "invalid protocol %q (want one of %s)", p, strings.Join(protocols, ", "))
	}
}

func fieldAt(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }
