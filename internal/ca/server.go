package ca

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/skein-mesh/skein/internal/apiwire"
)

// Authenticator establishes who is calling CreateCertificate. Locally that
// is a workload token; on Kubernetes it would be a projected service
// account token checked with a TokenReview.
type Authenticator interface {
	// Authenticate answers the caller's identity or a gRPC status error
	// (codes.Unauthenticated).
	Authenticate(ctx context.Context) (Identity, error)
}

// PodLookup answers the service account of a pod that exists.
type PodLookup func(namespace, name string) (serviceAccount string, ok bool)

// TokenAuthenticator accepts workload tokens from Tokens, for pods that
// still exist with the service account the token names.
type TokenAuthenticator struct {
	Tokens *Tokens
	Pods   PodLookup
}

var _ Authenticator = (*TokenAuthenticator)(nil)

// Authenticate reads `authorization: Bearer <token>` from the metadata.
func (a *TokenAuthenticator) Authenticate(ctx context.Context) (Identity, error) {
	token, err := bearer(ctx)
	if err != nil {
		return Identity{}, err
	}
	c, err := a.Tokens.Verify(token)
	if err != nil {
		return Identity{}, status.Errorf(codes.Unauthenticated, "workload token refused: %v", err)
	}
	sa, ok := a.Pods(c.Namespace, c.Pod)
	if !ok {
		return Identity{}, status.Errorf(codes.Unauthenticated, "workload token refused: pod %s/%s does not exist", c.Namespace, c.Pod)
	}
	if sa != c.ServiceAccount {
		return Identity{}, status.Errorf(codes.Unauthenticated,
			"workload token refused: pod %s/%s now runs as service account %q, the token names %q", c.Namespace, c.Pod, sa, c.ServiceAccount)
	}
	return Identity{Namespace: c.Namespace, ServiceAccount: c.ServiceAccount, Pod: c.Pod}, nil
}

func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "no workload token: send `authorization: Bearer <token>` metadata (skein proxy --token-file)")
	}
	v := vals[0]
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") || strings.TrimSpace(v[7:]) == "" {
		return "", status.Error(codes.Unauthenticated, "authorization metadata is not `Bearer <token>`")
	}
	return strings.TrimSpace(v[7:]), nil
}

// Service is Istio's istio.v1.auth.IstioCertificateService.
type Service struct {
	securityv1.UnimplementedIstioCertificateServiceServer
	ca   *CA
	auth Authenticator
	log  *slog.Logger
}

// NewService serves ca to callers auth accepts.
func NewService(ca *CA, auth Authenticator, log *slog.Logger) *Service {
	return &Service{ca: ca, auth: auth, log: log}
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	securityv1.RegisterIstioCertificateServiceServer(g, s)
}

// CreateCertificate signs the request's CSR for the authenticated caller.
func (s *Service) CreateCertificate(ctx context.Context, req *securityv1.IstioCertificateRequest) (*securityv1.IstioCertificateResponse, error) {
	id, err := s.auth.Authenticate(ctx)
	if err != nil {
		s.log.Warn("certificate request refused", "error", err)
		return nil, err
	}
	if req.GetValidityDuration() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "validity_duration %d is negative", req.GetValidityDuration())
	}
	ttl := time.Duration(req.GetValidityDuration()) * time.Second
	chain, err := s.ca.Sign([]byte(req.GetCsr()), id, ttl)
	var mismatch *IdentityMismatchError
	if errors.As(err, &mismatch) {
		s.log.Warn("certificate request refused", "error", err)
		return nil, status.Errorf(codes.PermissionDenied, "%v", err)
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	s.log.Debug("issued workload certificate", "identity", id.SPIFFEID(s.ca.TrustDomain()), "ttl", s.ca.TTL(ttl))
	return &securityv1.IstioCertificateResponse{CertChain: chain}, nil
}

// TokenHandler issues workload tokens (POST /api/v1/token) to callers
// presenting the admin token: the local runner does this for each pod it
// starts, as the kubelet projects a token into each pod.
func TokenHandler(tokens *Tokens, adminToken string, pods PodLookup, ttl time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		given, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(given)), []byte(adminToken)) != 1 {
			httpError(w, http.StatusUnauthorized, "Unauthorized", "issuing workload tokens needs `Authorization: Bearer <admin token>` (the admin-token file in the CA directory)")
			return
		}
		var req apiwire.TokenRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "BadRequest", "token request: "+err.Error())
			return
		}
		if req.Namespace == "" || req.Pod == "" {
			httpError(w, http.StatusBadRequest, "BadRequest", "token request: namespace and pod are required")
			return
		}
		sa, ok := pods(req.Namespace, req.Pod)
		if !ok {
			httpError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found in namespace %q", req.Pod, req.Namespace))
			return
		}
		tok := tokens.Issue(Claims{Namespace: req.Namespace, Pod: req.Pod, ServiceAccount: sa}, ttl)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(apiwire.TokenResponse{Token: tok, ServiceAccount: sa, Expiry: tokens.now().Add(ttl).UTC()})
	})
}

// httpError answers like the config API: {"error": ..., "reason": ...}.
func httpError(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "reason": reason})
}
