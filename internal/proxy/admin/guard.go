package admin

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// MutationPolicy decides who may call the admin endpoints that change the
// proxy (POST /quitquitquit): the pod itself, as Envoy's admin is bound to
// the pod's localhost in Istio. Read-only endpoints stay open.
type MutationPolicy struct {
	// TokenFile holds the pod's workload token; a caller presenting it as
	// `Authorization: Bearer <token>` is the pod (or its owner).
	TokenFile string
	// TrustedSource reports whether a source address is the pod's own
	// (its loopback inside its network namespace); nil trusts none, as in
	// local mode where every user shares 127.0.0.0/8.
	TrustedSource func(netip.Addr) bool
}

// allows reports whether r may mutate.
func (p MutationPolicy) allows(r *http.Request) bool {
	if p.TrustedSource != nil {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && p.TrustedSource(ip.Unmap()) {
				return true
			}
		}
	}
	if p.TokenFile == "" {
		return false
	}
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(given) == "" {
		return false
	}
	want, err := os.ReadFile(p.TokenFile)
	if err != nil || len(strings.TrimSpace(string(want))) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(given)), []byte(strings.TrimSpace(string(want)))) == 1
}

// mutating wraps a handler that changes the proxy.
func (a *admin) mutating(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.opts.Mutations.allows(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skein-proxy-admin"`)
			http.Error(w, r.URL.Path+" changes the proxy: call it from the pod's own address or with `Authorization: Bearer <the pod's workload token>`", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// PodLocal is the TrustedSource of a proxy in its own network namespace
// (a pod IP that is not loopback): its loopback and its pod IP. In local
// mode (loopback pod IPs shared by every user) it answers nil.
func PodLocal(podIP string) func(netip.Addr) bool {
	pod, err := netip.ParseAddr(podIP)
	if err != nil || pod.IsLoopback() || pod.IsUnspecified() {
		return nil
	}
	return func(ip netip.Addr) bool { return ip.IsLoopback() || ip == pod }
}
