package analyze

import (
	"fmt"
	"strconv"

	networking "istio.io/api/networking/v1alpha3"
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
