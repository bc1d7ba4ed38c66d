package model

import (
	security "istio.io/api/security/v1beta1"

	"github.com/skein-mesh/skein/internal/config"
)

// MTLSMode is the effective PeerAuthentication mode of one workload port:
// what its sidecar accepts from peers.
type MTLSMode int

const (
	// MTLSPermissive accepts mTLS and plaintext (Istio's default).
	MTLSPermissive MTLSMode = iota
	// MTLSStrict accepts only mTLS.
	MTLSStrict
	// MTLSDisable accepts only plaintext.
	MTLSDisable
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSStrict:
		return "STRICT"
	case MTLSDisable:
		return "DISABLE"
	}
	return "PERMISSIVE"
}

// PeerAuthnMode resolves the mTLS mode in force for port (the workload's
// target port) of a workload in namespace ns with labels, with Istio's
// precedence: a selector policy in the namespace, then the namespace-wide
// policy, then the mesh-wide policy of the root namespace, then PERMISSIVE.
// An UNSET mode inherits from the next level down; portLevelMtls (selector
// policies only) overrides the mode for its port. When several policies
// tie, the oldest wins, as in Istio.
func (pc *PushContext) PeerAuthnMode(ns string, labels map[string]string, port uint32) MTLSMode {
	var workload, namespace, mesh *config.Object
	for _, o := range pc.peerAuthn[ns] {
		sel := o.Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()
		switch {
		case len(sel) > 0:
			if workload == nil && LabelsMatch(sel, labels) {
				workload = o
			}
		case ns != pc.RootNamespace:
			if namespace == nil {
				namespace = o
			}
		}
	}
	for _, o := range pc.peerAuthn[pc.RootNamespace] {
		if len(o.Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()) == 0 {
			mesh = o
			break
		}
	}
	mode := security.PeerAuthentication_MutualTLS_UNSET
	// From the most specific level down, the first set mode wins.
	for _, o := range []*config.Object{workload, namespace, mesh} {
		if o == nil {
			continue
		}
		pa := o.Spec.(*security.PeerAuthentication)
		if o == workload {
			if pl, ok := pa.GetPortLevelMtls()[port]; ok && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
				mode = pl.GetMode()
				break
			}
		}
		if m := pa.GetMtls().GetMode(); m != security.PeerAuthentication_MutualTLS_UNSET {
			mode = m
			break
		}
	}
	switch mode {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return MTLSStrict
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return MTLSDisable
	}
	return MTLSPermissive
}
