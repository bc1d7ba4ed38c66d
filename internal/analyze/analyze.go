// Package analyze is Skein's `istioctl analyze`: analyzers that look at a
// set of Istio and Kubernetes objects together (files, the control plane's
// config and registry, or a cluster) and report problems with Istio's
// message codes, levels and texts (IST0101, IST0102, ...).
package analyze

import (
	"fmt"
	"sort"
	"strings"
)

// Analyzer is one check over the whole input.
type Analyzer struct {
	Name        string
	Description string
	run         func(*context)
}

// All is every analyzer, in the order they run.
func All() []Analyzer {
	return []Analyzer{
		{"annotations.K8sAnalyzer", "Checks for misplaced, unknown, deprecated and invalid Istio annotations in Kubernetes resources", annotationsAnalyzer},
		{"applicationUID.Analyzer", "Checks invalid application UID 1337", applicationUIDAnalyzer},
		{"authz.AuthorizationPoliciesAnalyzer", "Checks the validity of authorization policies", authzAnalyzer},
		{"deployment.MultiServiceAnalyzer", "Checks association between services and pods", deploymentServiceAnalyzer},
		{"destinationrule.MTLSConflictAnalyzer", "Checks DestinationRule TLS modes against PeerAuthentication mTLS modes", mtlsConflictAnalyzer},
		{"destinationrule.CaCertificateAnalyzer", "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL", caCertificateAnalyzer},
		{"gateway.CertificateAnalyzer", "Checks a gateway certificate", gatewayCertificateAnalyzer},
		{"gateway.ConflictingGatewayAnalyzer", "Checks a gateway's selector, port number and hosts", conflictingGatewayAnalyzer},
		{"gateway.IngressGatewayPortAnalyzer", "Checks a gateway's ports against the gateway's Kubernetes service ports", gatewaySelectorAnalyzer},
		{"gateway.SecretAnalyzer", "Checks a gateway's referenced secrets for correctness", gatewaySecretAnalyzer},
		{"injection.Analyzer", "Checks conditions related to Istio sidecar injection", injectionAnalyzer},
		{"schema.ValidationAnalyzer", "Runs schema validation as an analyzer and reports any violations", func(*context) {}},
		{"service.PortNameAnalyzer", "Checks the port names associated with each service", portNameAnalyzer},
		{"serviceentry.Analyzer", "Checks the validity of ServiceEntry", serviceEntryAnalyzer},
		{"sidecar.SelectorAnalyzer", "Validates that sidecars that define a workload selector match an existing workload and that a workload is not matched by multiple sidecars", sidecarSelectorAnalyzer},
		{"telemetry.Analyzer", "Validates that telemetries that define a selector match an existing workload and that a workload is not matched by multiple telemetries", telemetryAnalyzer},
		{"virtualservice.ConflictingMeshGatewayHostsAnalyzer", "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts", conflictingMeshGatewayHostsAnalyzer},
		{"virtualservice.DestinationHostAnalyzer", "Checks the destination hosts associated with each virtual service", destinationHostAnalyzer},
		{"virtualservice.DestinationRuleAnalyzer", "Checks the destination rules associated with each virtual service", destinationSubsetAnalyzer},
		{"virtualservice.GatewayAnalyzer", "Checks the gateways associated with each virtual service", vsGatewayAnalyzer},
		{"virtualservice.RegexAnalyzer", "Checks regex syntax", regexAnalyzer},
		{"virtualservice.MatchAnalyzer", "Checks for unreachable rules and ineffective matches", matchAnalyzer},
		{"workloadentry.Analyzer", "Checks the service accounts referenced by workload entries", workloadEntryAnalyzer},
	}
}

// Options select what is reported.
type Options struct {
	// Namespace limits messages to resources in it (and to the Namespace
	// object of that name); "" reports every namespace (-A).
	Namespace string
	// RootNamespace is the mesh's config root ("istio-system").
	RootNamespace string
	// Suppress silences codes on resources (istioctl's --suppress).
	Suppress []Suppression
}

// Run runs every analyzer over in and returns the messages, sorted and
// without duplicates, filtered to opts.Namespace.
func Run(in *Input, opts Options) []Message {
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	c := newContext(in, opts.RootNamespace)
	for _, a := range All() {
		a.run(c)
	}
	msgs := append(append([]Message(nil), in.schema...), c.msgs...)
	var out []Message
	seen := map[string]bool{}
	for _, m := range msgs {
		if opts.Namespace != "" && m.Resource != nil && m.Resource.Namespace != opts.Namespace &&
			!(m.Resource.Kind == "Namespace" && m.Resource.Name == opts.Namespace) {
			continue
		}
		if suppressed(in, m, opts.Suppress) {
			continue
		}
		key := m.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Type.Level != b.Type.Level:
			return a.Type.Level > b.Type.Level
		case a.Type.Code != b.Type.Code:
			return a.Type.Code < b.Type.Code
		case origin(a) != origin(b):
			return origin(a) < origin(b)
		default:
			return fmt.Sprint(a.Params...) < fmt.Sprint(b.Params...)
		}
	})
	return out
}

func origin(m Message) string {
	if m.Resource == nil {
		return ""
	}
	return m.Resource.FriendlyName()
}

// Worst is the highest level among msgs, and whether there is any.
func Worst(msgs []Message) (Level, bool) {
	worst, any := Info, false
	for _, m := range msgs {
		if !any || m.Type.Level > worst {
			worst, any = m.Type.Level, true
		}
	}
	return worst, any
}

// Filter keeps the messages at or above min.
func Filter(msgs []Message, min Level) []Message {
	var out []Message
	for _, m := range msgs {
		if m.Type.Level >= min {
			out = append(out, m)
		}
	}
	return out
}

// joinNames renders a name list the way Istio's messages do ("a,b").
func joinNames(names []string) string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	return strings.Join(s, ",")
}
