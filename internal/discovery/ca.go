package discovery

import (
	"net/http"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/ca"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/kube"
)

// CAOptions configure the mesh CA the control plane runs (istiod's
// Citadel role).
type CAOptions struct {
	// Dir keeps the self-signed root, the token key and the admin token.
	// Default: <StoreDir>/../ca with a store directory, else in memory.
	Dir string
	// CACertsDir plugs in a CA from Istio's cacerts files (ca-cert.pem,
	// ca-key.pem, root-cert.pem, cert-chain.pem).
	CACertsDir  string
	TrustDomain string        // default cluster.local
	CertTTL     time.Duration // default workload certificate lifetime (24h)
	MaxCertTTL  time.Duration // longest lifetime a workload may ask for (90 days)
	TokenTTL    time.Duration // lifetime of workload tokens (1 year)
	// CredentialFile keeps the admin credential when Dir is empty (an
	// in-memory CA): the owner's existing credential there is adopted, or
	// a new one written 0600, so the CLI finds it as kubectl finds its
	// kubeconfig. Empty: the credential lives only in memory.
	CredentialFile string
}

// identity is the CA side of the control plane.
type identity struct {
	ca         *ca.CA
	tokens     *ca.Tokens
	adminToken string
	service    *ca.Service
	auth       ca.Authenticator // the CA's and xDS's
	tokenTTL   time.Duration
}

func (s *Server) setupCA() error {
	o := s.opts.CA
	if o.Dir == "" && s.opts.StoreDir != "" {
		o.Dir = filepath.Join(filepath.Dir(filepath.Clean(s.opts.StoreDir)), "ca")
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 365 * 24 * time.Hour
	}
	authority, err := ca.New(ca.Options{
		Dir: o.Dir, PluginDir: o.CACertsDir, TrustDomain: o.TrustDomain,
		DefaultTTL: o.CertTTL, MaxTTL: o.MaxCertTTL,
	})
	if err != nil {
		return err
	}
	tokens, err := ca.OpenTokens(o.Dir, nil)
	if err != nil {
		return err
	}
	var admin string
	if o.Dir == "" && o.CredentialFile != "" {
		if admin, err = ca.LoadOrCreateAdminTokenFile(o.CredentialFile); err != nil {
			// A read-only home (a container) still runs, but then no CLI
			// can administer this control plane: say so.
			s.log.Warn("admin credential kept in memory only: no client can apply or read /debug", "file", o.CredentialFile, "err", err)
		}
	}
	if admin == "" {
		if admin, err = ca.LoadOrCreateAdminToken(o.Dir); err != nil {
			return err
		}
	}
	var auth ca.Authenticator = &ca.TokenAuthenticator{Tokens: tokens, Pods: s.podServiceAccount}
	if s.opts.Kube != nil {
		// Proxies present service-account tokens the node agent requested
		// for audience istio-ca; the API server vouches for them.
		auth = kube.NewTokenReviewAuthenticator(s.opts.Kube, nil, 0)
	}
	s.identity = &identity{
		ca: authority, tokens: tokens, adminToken: admin, tokenTTL: o.TokenTTL, auth: auth,
		service: ca.NewService(authority, auth, s.log),
	}
	s.log.Info("mesh CA ready", "dir", o.Dir, "plugin", o.CACertsDir, "trustDomain", authority.TrustDomain(),
		"root", authority.Root().Subject.String(), "rootNotAfter", authority.Root().NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// podServiceAccount looks a pod up in the current store snapshot; its
// service account is "default" when the spec names none, as in Kubernetes.
func (s *Server) podServiceAccount(namespace, name string) (string, bool) {
	obj, ok := s.store.Snapshot().Get(config.Key{Kind: "Pod", Namespace: namespace, Name: name})
	if !ok {
		return "", false
	}
	pod, ok := obj.Spec.(*corev1.Pod)
	if !ok {
		return "", false
	}
	if pod.Spec.ServiceAccountName == "" {
		return "default", true
	}
	return pod.Spec.ServiceAccountName, true
}

func (s *Server) registerCA(g *grpc.Server) { s.identity.service.Register(g) }

func (s *Server) handleCA(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/token", ca.TokenHandler(s.identity.tokens, s.identity.adminToken, s.podServiceAccount, s.identity.tokenTTL))
}

// AdminToken is the secret that authorises issuing workload tokens.
func (s *Server) AdminToken() string { return s.identity.adminToken }

// CA is the mesh certificate authority.
func (s *Server) CA() *ca.CA { return s.identity.ca }
