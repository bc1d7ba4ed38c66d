// Package nodemeta is the one definition of the node metadata a proxy
// announces: the Struct in its xDS Node, which the control plane reads, and
// the metadata it exchanges with its peers, which telemetry reads. Both
// sides import it, so a key is spelled once. The keys are Istio's
// (pkg/model's NodeMetadata); APP_IP is Skein's own, for local mode. It is a
// leaf: protobuf's Struct only.
package nodemeta

import (
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// Istio's node metadata keys.
const (
	KeyName             = "NAME"
	KeyNamespace        = "NAMESPACE"
	KeyLabels           = "LABELS"
	KeyInstanceIPs      = "INSTANCE_IPS"
	KeyServiceAccount   = "SERVICE_ACCOUNT"
	KeyWorkloadName     = "WORKLOAD_NAME"
	KeyClusterID        = "CLUSTER_ID"
	KeyInterceptionMode = "INTERCEPTION_MODE"
	// KeyIstioVersion is the proxy's version: EnvoyFilter's proxyVersion
	// matches and proxy-status read it.
	KeyIstioVersion = "ISTIO_VERSION"
	// KeyAppIP is where the app listens behind a local-mode sidecar (Skein's
	// key; Kubernetes pods share one network namespace and have none).
	KeyAppIP = "APP_IP"
)

// InterceptionNone is INTERCEPTION_MODE for a proxy that captures no
// traffic: apps dial it (HTTP_PROXY) and it binds the pod's ports.
const InterceptionNone = "NONE"

// Metadata is a proxy's node metadata, typed.
type Metadata struct {
	Name             string // pod name
	Namespace        string
	Labels           map[string]string
	InstanceIPs      []string
	ServiceAccount   string
	WorkloadName     string
	ClusterID        string
	InterceptionMode string
	IstioVersion     string
	AppIP            string
}

// field is one string-valued key and the field holding it, so ToStruct
// and FromStruct spell each key once.
type field struct {
	key string
	val *string
}

func (m *Metadata) stringFields() []field {
	return []field{
		{KeyName, &m.Name},
		{KeyNamespace, &m.Namespace},
		{KeyServiceAccount, &m.ServiceAccount},
		{KeyWorkloadName, &m.WorkloadName},
		{KeyClusterID, &m.ClusterID},
		{KeyInterceptionMode, &m.InterceptionMode},
		{KeyIstioVersion, &m.IstioVersion},
		{KeyAppIP, &m.AppIP},
	}
}

// ToStruct renders m with Istio's keys. Empty values are left out, as
// Istio's omitempty JSON does; a reader sees them as empty either way.
func (m Metadata) ToStruct() *structpb.Struct {
	f := map[string]*structpb.Value{}
	for _, sf := range m.stringFields() {
		if *sf.val != "" {
			f[sf.key] = structpb.NewStringValue(*sf.val)
		}
	}
	if len(m.InstanceIPs) > 0 {
		f[KeyInstanceIPs] = structpb.NewStringValue(strings.Join(m.InstanceIPs, ","))
	}
	if len(m.Labels) > 0 {
		labels := make(map[string]*structpb.Value, len(m.Labels))
		for k, v := range m.Labels {
			labels[k] = structpb.NewStringValue(v)
		}
		f[KeyLabels] = structpb.NewStructValue(&structpb.Struct{Fields: labels})
	}
	return &structpb.Struct{Fields: f}
}

// FromStruct reads the keys ToStruct writes; a missing or mistyped key is
// empty. Labels is never nil.
func FromStruct(s *structpb.Struct) Metadata {
	var m Metadata
	f := s.GetFields()
	for _, sf := range m.stringFields() {
		*sf.val = f[sf.key].GetStringValue()
	}
	if ips := f[KeyInstanceIPs].GetStringValue(); ips != "" {
		m.InstanceIPs = strings.Split(ips, ",")
	}
	m.Labels = map[string]string{}
	for k, v := range f[KeyLabels].GetStructValue().GetFields() {
		m.Labels[k] = v.GetStringValue()
	}
	return m
}
