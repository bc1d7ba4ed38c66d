package analyze

import (
	"fmt"
	"strings"
)

// Level is a message's severity, ordered Info < Warning < Error.
type Level int

// Istio's three analysis levels.
const (
	Info Level = iota
	Warning
	Error
)

func (l Level) String() string {
	switch l {
	case Error:
		return "Error"
	case Warning:
		return "Warning"
	default:
		return "Info"
	}
}

// ParseLevel reads a level as istioctl's --failure-threshold spells it.
func ParseLevel(s string) (Level, error) {
	for _, l := range []Level{Info, Warning, Error} {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return Info, fmt.Errorf("%q not a valid level: one of Info, Warning, Error", s)
}

// MessageType is one of Istio's analysis messages: code, level and the
// printf template of its text (pkg/config/analysis/msg/messages.yaml).
type MessageType struct {
	Code     string
	Level    Level
	Template string
}

// The message types Skein's analyzers emit, with Istio's codes and texts.
var (
	Deprecated                         = &MessageType{"IST0002", Warning, "Deprecated: %s"}
	ReferencedResourceNotFound         = &MessageType{"IST0101", Error, "Referenced %s not found: %q"}
	NamespaceNotInjected               = &MessageType{"IST0102", Info, "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection."}
	PodMissingProxy                    = &MessageType{"IST0103", Warning, "The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload."}
	SchemaValidationError              = &MessageType{"IST0106", Error, "Schema validation error: %v"}
	MisplacedAnnotation                = &MessageType{"IST0107", Warning, "Misplaced annotation: %s can only be applied to %s"}
	UnknownAnnotation                  = &MessageType{"IST0108", Warning, "Unknown annotation: %s"}
	ConflictingMeshGatewayVSHosts      = &MessageType{"IST0109", Error, "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."}
	ConflictingSidecarWorkloadSelector = &MessageType{"IST0110", Error, "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior."}
	MultipleSidecarsWithoutSelectors   = &MessageType{"IST0111", Error, "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior."}
	VSDestinationPortSelectorRequired  = &MessageType{"IST0112", Error, "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate."}
	MTLSPolicyConflict                 = &MessageType{"IST0113", Error, "A DestinationRule and Policy are in conflict with regards to mTLS for host %s. The DestinationRule %q specifies that mTLS must be %t but the Policy object %q specifies %s."}
	DeploymentAssociatedToMultipleSvc  = &MessageType{"IST0116", Warning, "This deployment %s is associated with multiple services using port %d but different protocols: %v"}
	PortNameNotUnderNamingConvention   = &MessageType{"IST0118", Info, "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port."}
	InvalidRegexp                      = &MessageType{"IST0122", Warning, "Field %q regular expression invalid: %q (%s)"}
	NamespaceMultipleInjectionLabels   = &MessageType{"IST0123", Warning, "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists."}
	InvalidAnnotation                  = &MessageType{"IST0125", Warning, "Invalid annotation %s: %s"}
	NoMatchingWorkloadsFound           = &MessageType{"IST0127", Warning, "No matching workloads for this resource with the following labels: %s"}
	NoServerCertVerificationDest       = &MessageType{"IST0128", Warning, "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s"}
	NoServerCertVerificationPort       = &MessageType{"IST0129", Warning, "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s"}
	VSUnreachableRule                  = &MessageType{"IST0130", Warning, "VirtualService rule %v not used (%s)."}
	VSIneffectiveMatch                 = &MessageType{"IST0131", Info, "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v)."}
	VSHostNotFoundInGateway            = &MessageType{"IST0132", Warning, "one or more host %v defined in VirtualService %s not found in Gateway %s."}
	ServiceEntryAddressesRequired      = &MessageType{"IST0134", Warning, "ServiceEntry addresses are required for this protocol."}
	DeprecatedAnnotation               = &MessageType{"IST0135", Info, "Annotation %q has been deprecated%s and may not work in future Istio versions."}
	DeploymentConflictingPorts         = &MessageType{"IST0137", Warning, "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v."}
	GatewayDuplicateCertificate        = &MessageType{"IST0138", Warning, "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections."}
	IngressRouteRulesNotAffected       = &MessageType{"IST0140", Warning, "Subset in virtual service %s has no effect on ingress gateway %s requests"}
	LocalhostListener                  = &MessageType{"IST0143", Error, "Port %v is exposed in a Service but listens on localhost. It will not be exposed to other pods."}
	InvalidApplicationUID              = &MessageType{"IST0144", Warning, "User ID (UID) 1337 is reserved for the sidecar proxy."}
	ConflictingGateways                = &MessageType{"IST0145", Error, "Conflict with gateways %s (workload selector %s, port %s, hosts %v)."}
	InvalidTelemetryProvider           = &MessageType{"IST0157", Warning, "The Telemetry %v in namespace %q with empty providers will be ignored."}
	ConflictingTelemetrySelectors      = &MessageType{"IST0159", Error, "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior."}
	MultipleTelemetriesWithoutSelector = &MessageType{"IST0160", Error, "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior."}
)

// docBase is where istio.io documents every message code.
const docBase = "https://istio.io/latest/docs/reference/config/analysis"

// Message is one finding about one resource.
type Message struct {
	Type     *MessageType
	Params   []any
	Resource *Resource // nil for findings about no single resource
	// Line is the line of the offending field when known, else the
	// resource's first line.
	Line int
}

// Text is the message's rendered template.
func (m Message) Text() string { return fmt.Sprintf(m.Type.Template, m.Params...) }

// Reference is istioctl's "file:line" of the message, or "".
func (m Message) Reference() string {
	if m.Resource == nil || m.Resource.File == "" {
		return ""
	}
	line := m.Line
	if line == 0 {
		line = m.Resource.Line
	}
	return fmt.Sprintf("%s:%d", m.Resource.File, line)
}

// String renders the message the way istioctl analyze logs it:
// "Error [IST0101] (VirtualService shop/web file.yaml:12) Referenced ...".
func (m Message) String() string {
	origin := ""
	if m.Resource != nil {
		ref := ""
		if r := m.Reference(); r != "" {
			ref = " " + r
		}
		origin = " (" + m.Resource.FriendlyName() + ref + ")"
	}
	return fmt.Sprintf("%v [%v]%s %s", m.Type.Level, m.Type.Code, origin, m.Text())
}

// Unstructured is the message as istioctl's -o json|yaml prints it.
func (m Message) Unstructured() map[string]any {
	out := map[string]any{
		"code":             m.Type.Code,
		"level":            m.Type.Level.String(),
		"message":          m.Text(),
		"documentationUrl": docBase + "/" + strings.ToLower(m.Type.Code) + "/?ref=istioctl-analyze",
	}
	if m.Resource != nil {
		out["origin"] = m.Resource.FriendlyName()
		if r := m.Reference(); r != "" {
			out["reference"] = r
		}
	}
	return out
}
