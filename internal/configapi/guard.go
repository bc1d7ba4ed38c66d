package configapi

import (
	"context"
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/skein-mesh/skein/internal/apiwire"
)

// Role is what an authenticated caller may do.
type Role int

const (
	// Anonymous callers read config (not Secrets), metrics and traces.
	Anonymous Role = iota
	// Workload callers present a workload token: they read as Anonymous.
	Workload
	// Admin callers present the admin credential: they apply, delete,
	// read Secrets (redacted) and the /debug endpoints.
	Admin
)

func (r Role) String() string {
	switch r {
	case Admin:
		return "admin"
	case Workload:
		return "workload"
	}
	return "anonymous"
}

// Guard authenticates config API callers and refuses the shapes of
// browser attacks (cross-site POSTs, DNS rebinding) before any handler
// runs. Its zero value refuses every credential.
type Guard struct {
	// AdminToken is the admin bearer credential (discovery's admin-token).
	AdminToken string
	// Workload verifies a workload token (nil: none accepted).
	Workload func(token string) bool
	// Hosts are extra Host header names accepted besides IP literals,
	// localhost and in-cluster service names (*.svc, *.svc.<domain>).
	Hosts []string
	// LooseContentType lists paths whose POSTs keep their own content
	// types (the Zipkin/OTLP span ingest proxies post to).
	LooseContentType func(path string) bool
}

type roleKey struct{}

// RoleOf answers the role Guard.Handler established for r.
func RoleOf(r *http.Request) Role {
	role, _ := r.Context().Value(roleKey{}).(Role)
	return role
}

// Handler checks Host, Origin and (on writes) Content-Type, authenticates
// the bearer credential if one is sent and passes the caller's role on in
// the request context. A credential that is sent but wrong is refused
// (401) rather than downgraded to anonymous.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, apiwire.ReasonForbidden,
				"Host "+strconvQuote(r.Host)+" is not this control plane's (a DNS-rebinding shape); use its IP address or localhost")
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
			writeError(w, http.StatusForbidden, apiwire.ReasonForbidden, "cross-origin request from "+strconvQuote(o)+" refused")
			return
		}
		if isWrite(r.Method) && (g.LooseContentType == nil || !g.LooseContentType(r.URL.Path)) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, apiwire.ReasonUnsupportedMedia,
					"Content-Type must be application/json, not "+strconvQuote(r.Header.Get("Content-Type")))
				return
			}
		}
		role := Anonymous
		if auth := r.Header.Get("Authorization"); auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			token = strings.TrimSpace(token)
			switch {
			case ok && g.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(g.AdminToken)) == 1:
				role = Admin
			case ok && g.Workload != nil && g.Workload(token):
				role = Workload
			default:
				writeError(w, http.StatusUnauthorized, apiwire.ReasonUnauthorized, "the bearer credential is not valid for this control plane")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), roleKey{}, role)))
	})
}

// RequireAdmin answers 401 to anonymous callers and 403 to other roles.
func RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !requireAdmin(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

func requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	switch RoleOf(r) {
	case Admin:
		return true
	case Anonymous:
		w.Header().Set("WWW-Authenticate", `Bearer realm="skein"`)
		writeError(w, http.StatusUnauthorized, apiwire.ReasonUnauthorized,
			r.Method+" "+r.URL.Path+" needs the admin credential: `Authorization: Bearer <token>` from the control plane's "+
				"<data dir>/ca/"+apiwire.CredentialFile+" (the CLI reads it from $SKEIN_HOME or ~/.skein, or $"+apiwire.CredentialEnv+")")
	default:
		writeError(w, http.StatusForbidden, apiwire.ReasonForbidden, r.Method+" "+r.URL.Path+" is for the admin role, not "+RoleOf(r).String())
	}
	return false
}

func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// hostAllowed accepts what a client that meant this server sends: an IP
// literal, localhost, a Kubernetes service name, or a configured name. A
// page on evil.example re-pointed at 127.0.0.1 still sends its own name.
func (g *Guard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if host == "istiod" || strings.HasPrefix(host, "istiod.") && !strings.Contains(strings.TrimPrefix(host, "istiod."), ".") {
		return true // istiod.istio-system
	}
	if strings.HasSuffix(host, ".svc") || strings.Contains(host, ".svc.") && strings.HasSuffix(host, ".local") {
		return true
	}
	for _, h := range g.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether the Origin header names the server the
// request was sent to.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

func strconvQuote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
