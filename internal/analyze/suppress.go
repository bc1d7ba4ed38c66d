package analyze

import (
	"fmt"
	"path"
	"strings"
)

// annotationSuppress is Istio's per-resource suppression: a
// comma-separated list of codes ("*" for all) not to report on it.
const annotationSuppress = "galley.istio.io/analyze-suppress"

// Suppression is istioctl analyze's --suppress CODE=RESOURCE: the code
// ("IST0102") is not reported on resources matching RESOURCE, written
// "Kind name.namespace" with "*" wildcards ("DestinationRule *.default").
type Suppression struct {
	Code     string
	Resource string
}

// ParseSuppression reads one --suppress value.
func ParseSuppression(s string) (Suppression, error) {
	code, res, ok := strings.Cut(s, "=")
	if !ok || code == "" || res == "" {
		return Suppression{}, fmt.Errorf("%s is not a valid suppression value. See skein analyze --help", s)
	}
	return Suppression{Code: code, Resource: res}, nil
}

// KnownCode reports whether code is one Skein's analyzers emit.
func KnownCode(code string) bool {
	for _, t := range []*MessageType{Deprecated, ReferencedResourceNotFound, NamespaceNotInjected, PodMissingProxy, SchemaValidationError,
		MisplacedAnnotation, UnknownAnnotation, ConflictingMeshGatewayVSHosts, ConflictingSidecarWorkloadSelector, MultipleSidecarsWithoutSelectors,
		VSDestinationPortSelectorRequired, MTLSPolicyConflict, DeploymentAssociatedToMultipleSvc, PortNameNotUnderNamingConvention, InvalidRegexp,
		NamespaceMultipleInjectionLabels, InvalidAnnotation, NoMatchingWorkloadsFound, NoServerCertVerificationDest, NoServerCertVerificationPort,
		VSUnreachableRule, VSIneffectiveMatch, VSHostNotFoundInGateway, ServiceEntryAddressesRequired, DeprecatedAnnotation, DeploymentConflictingPorts,
		GatewayDuplicateCertificate, IngressRouteRulesNotAffected, LocalhostListener, InvalidApplicationUID, ConflictingGateways,
		InvalidTelemetryProvider, ConflictingTelemetrySelectors, MultipleTelemetriesWithoutSelector} {
		if t.Code == code {
			return true
		}
	}
	return false
}

// suppressed reports whether m is silenced by a flag or by its resource's
// analyze-suppress annotation.
func suppressed(in *Input, m Message, flags []Suppression) bool {
	if m.Resource == nil {
		return false
	}
	r := m.Resource
	name := r.Kind + " " + r.Name
	if r.Namespace != "" {
		name += "." + r.Namespace
	}
	for _, s := range flags {
		if s.Code != m.Type.Code {
			continue
		}
		if ok, _ := path.Match(s.Resource, name); ok {
			return true
		}
	}
	if e, ok := in.Get(r.Kind, r.Namespace, r.Name); ok {
		for _, c := range strings.Split(e.Obj.Meta.Annotations[annotationSuppress], ",") {
			if c = strings.TrimSpace(c); c == "*" || c == m.Type.Code {
				return true
			}
		}
	}
	return false
}
