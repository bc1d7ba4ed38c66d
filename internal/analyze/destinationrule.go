package analyze

import (
	"fmt"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// caCertificateAnalyzer: IST0128 and IST0129 when a DestinationRule's
// SIMPLE or MUTUAL TLS does not verify the server.
func caCertificateAnalyzer(c *context) {
	for _, e := range c.in.List("DestinationRule") {
		dr, ok := e.Obj.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		name, ns := e.Obj.Meta.Name, e.Obj.Meta.Namespace
		selector := len(dr.GetWorkloadSelector().GetMatchLabels()) > 0
		tp := dr.GetTrafficPolicy()
		if mode, bad := unverified(tp.GetTls(), selector); bad {
			c.report(NoServerCertVerificationDest, e, "spec.trafficPolicy.tls.mode", name, ns, mode, dr.GetHost())
		}
		for i, pl := range tp.GetPortLevelSettings() {
			if mode, bad := unverified(pl.GetTls(), selector); bad {
				c.report(NoServerCertVerificationPort, e, fmt.Sprintf("spec.trafficPolicy.portLevelSettings[%d].tls.mode", i),
					name, ns, mode, dr.GetHost(), strconv.Itoa(int(pl.GetPort().GetNumber())))
			}
		}
	}
}

// unverified reports whether TLS settings leave the server unverified. A
// credentialName supplies the CA only to the workloads a selector picks.
func unverified(tls *networking.ClientTLSSettings, selector bool) (string, bool) {
	if tls == nil || tls.GetInsecureSkipVerify().GetValue() {
		return "", false
	}
	mode := tls.GetMode()
	if mode != networking.ClientTLSSettings_SIMPLE && mode != networking.ClientTLSSettings_MUTUAL {
		return "", false
	}
	if tls.GetCaCertificates() != "" || (tls.GetCredentialName() != "" && selector) {
		return "", false
	}
	return mode.String(), true
}

// mtlsConflictAnalyzer: IST0113 when a DestinationRule turns mTLS off for
// a service whose namespace (or the mesh) requires it with a STRICT
// PeerAuthentication, or on for one that disables it.
func mtlsConflictAnalyzer(c *context) {
	policyFor := func(ns string) (*Entry, string) {
		for _, scope := range []string{ns, c.rootNS} {
			for _, e := range c.in.List("PeerAuthentication") {
				pa, ok := e.Obj.Spec.(*security.PeerAuthentication)
				if !ok || e.Obj.Meta.Namespace != scope || len(pa.GetSelector().GetMatchLabels()) > 0 || pa.GetMtls() == nil {
					continue
				}
				if m := pa.GetMtls().GetMode(); m != security.PeerAuthentication_MutualTLS_UNSET {
					return e, m.String()
				}
			}
		}
		return nil, ""
	}
	for _, e := range c.in.List("DestinationRule") {
		dr, ok := e.Obj.Spec.(*networking.DestinationRule)
		if !ok || dr.GetTrafficPolicy().GetTls() == nil {
			continue
		}
		host := fqdn(e.Obj.Meta.Namespace, dr.GetHost())
		parts := strings.Split(host, ".")
		if len(parts) < 3 || !strings.HasSuffix(host, ".svc.cluster.local") {
			continue // only Kubernetes services have peer policies
		}
		pa, mode := policyFor(parts[1])
		if pa == nil {
			continue
		}
		drMode := dr.GetTrafficPolicy().GetTls().GetMode()
		on := drMode == networking.ClientTLSSettings_ISTIO_MUTUAL
		if (drMode == networking.ClientTLSSettings_DISABLE && mode == "STRICT") || (on && mode == "DISABLE") {
			c.report(MTLSPolicyConflict, e, "spec.trafficPolicy.tls.mode", host,
				e.Obj.Meta.Namespace+"/"+e.Obj.Meta.Name, on, pa.Obj.Meta.Namespace+"/"+pa.Obj.Meta.Name, mode)
		}
	}
}
