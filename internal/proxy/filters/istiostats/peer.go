package istiostats

import (
	"encoding/base64"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/nodemeta"
)

// Istio's metadata exchange headers: the peer's node metadata (a
// serialized google.protobuf.Struct, base64) and its node id.
const (
	headerPeerMetadata   = "X-Envoy-Peer-Metadata"
	headerPeerMetadataID = "X-Envoy-Peer-Metadata-Id"
)

// Node is the proxy's own identity, from its node metadata.
type Node struct {
	ID             string
	Name           string // pod name
	Namespace      string
	WorkloadName   string
	ServiceAccount string
	ClusterID      string
	Labels         map[string]string
}

// Canonical labels Istio's injector sets and metrics read.
const (
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
)

// peer is one side's workload identity as the metric labels show it,
// every value already defaulted to "unknown" as Istio does.
type peer struct {
	workload, namespace, app, version, canonicalService, canonicalRevision, cluster string
}

var unknownPeer = &peer{"unknown", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown"}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// peerOf derives the labels of a node, with Istio's canonical service
// fallbacks (canonical-name label, app, workload; revision label, version,
// "latest").
func peerOf(n Node) *peer {
	l := n.Labels
	return &peer{
		workload:          orUnknown(n.WorkloadName),
		namespace:         orUnknown(n.Namespace),
		app:               orUnknown(firstOf(l["app"], l["app.kubernetes.io/name"])),
		version:           orUnknown(firstOf(l["version"], l["app.kubernetes.io/version"])),
		canonicalService:  orUnknown(firstOf(l[labelCanonicalName], l["app.kubernetes.io/name"], l["app"], n.WorkloadName)),
		canonicalRevision: firstOf(l[labelCanonicalRevision], l["app.kubernetes.io/version"], l["version"], "latest"),
		cluster:           orUnknown(n.ClusterID),
	}
}

// NodeMetadata is the node metadata a proxy announces to its peers, in
// the metadata exchange header (HTTP) or frame (TCP): Istio's keys (NAME,
// NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS) with the labels that
// metrics read, canonical ones filled in so both sides agree.
func NodeMetadata(n Node) *structpb.Struct {
	p := peerOf(n)
	labels := map[string]string{labelCanonicalName: p.canonicalService, labelCanonicalRevision: p.canonicalRevision}
	if v := n.Labels["app"]; v != "" {
		labels["app"] = v
	}
	if v := n.Labels["version"]; v != "" {
		labels["version"] = v
	}
	return nodemeta.Metadata{
		Name:         n.Name,
		Namespace:    n.Namespace,
		WorkloadName: n.WorkloadName,
		ClusterID:    n.ClusterID,
		Labels:       labels,
	}.ToStruct()
}

// encodeNode renders the HTTP metadata header value: NodeMetadata,
// serialized and base64-encoded.
func encodeNode(n Node) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(NodeMetadata(n))
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// decodeNode parses a metadata header value.
func decodeNode(v string) (Node, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return Node{}, fmt.Errorf("%s: %v", headerPeerMetadata, err)
	}
	var s structpb.Struct
	if err := proto.Unmarshal(b, &s); err != nil {
		return Node{}, fmt.Errorf("%s: %v", headerPeerMetadata, err)
	}
	return nodeOf(&s), nil
}

// nodeOf reads the node metadata keys NodeMetadata writes.
func nodeOf(s *structpb.Struct) Node {
	m := nodemeta.FromStruct(s)
	return Node{Name: m.Name, Namespace: m.Namespace, WorkloadName: m.WorkloadName, ClusterID: m.ClusterID, Labels: m.Labels}
}

// peerCache memoizes decoded peers by header value: a proxy talks to few
// distinct workloads, so decoding happens once per peer, not per request.
type peerCache struct {
	m  sync.Map // header value → *peer
	n  int      // approximate size, guarded by mu
	mu sync.Mutex
}

// maxPeers bounds the cache against clients sending arbitrary headers.
const maxPeers = 4096

func (c *peerCache) get(v string) *peer {
	if v == "" {
		return unknownPeer
	}
	if p, ok := c.m.Load(v); ok {
		return p.(*peer)
	}
	n, err := decodeNode(v)
	if err != nil {
		return unknownPeer
	}
	p := peerOf(n)
	c.mu.Lock()
	if c.n < maxPeers {
		c.n++
		c.m.Store(v, p)
	}
	c.mu.Unlock()
	return p
}
