package kube

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skein-mesh/skein/internal/ca"
)

// CAAudience is the audience of the service-account tokens proxies present
// to the CA, as in Istio.
const CAAudience = "istio-ca"

var tokenReviewGVR = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}

// TokenReviewAuthenticator authenticates a proxy's Kubernetes
// service-account token with a TokenReview and answers the namespace and
// service account the API server vouches for; the CA then signs only
// spiffe://<trust domain>/ns/<ns>/sa/<sa>.
type TokenReviewAuthenticator struct {
	client    dynamic.Interface
	audiences []string
	ttl       time.Duration
	now       func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedReview
}

type cachedReview struct {
	id      ca.Identity
	expires time.Time
}

var _ ca.Authenticator = (*TokenReviewAuthenticator)(nil)

// maxCachedReviews bounds the cache; past it, it starts again empty.
const maxCachedReviews = 10000

// NewTokenReviewAuthenticator reviews tokens for audiences (default
// istio-ca) and caches successes for cacheTTL (default 1 minute, never past
// the token's own expiry).
func NewTokenReviewAuthenticator(client dynamic.Interface, audiences []string, cacheTTL time.Duration) *TokenReviewAuthenticator {
	if len(audiences) == 0 {
		audiences = []string{CAAudience}
	}
	if cacheTTL <= 0 {
		cacheTTL = time.Minute
	}
	return &TokenReviewAuthenticator{client: client, audiences: audiences, ttl: cacheTTL, now: time.Now, cache: map[[32]byte]cachedReview{}}
}

// Authenticate reads `authorization: Bearer <token>` and reviews it.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context) (ca.Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return ca.Identity{}, status.Error(codes.Unauthenticated, "no service-account token: send `authorization: Bearer <token>` metadata (skein proxy --token-file)")
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if token = strings.TrimSpace(token); !ok || token == "" {
		return ca.Identity{}, status.Error(codes.Unauthenticated, "authorization metadata is not `Bearer <token>`")
	}
	sum := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	c, hit := a.cache[sum]
	a.mu.Unlock()
	if hit && now.Before(c.expires) {
		return c.id, nil
	}
	id, err := a.review(ctx, token)
	if err != nil {
		return ca.Identity{}, err
	}
	expires := now.Add(a.ttl)
	if exp, ok := jwtExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	a.mu.Lock()
	if len(a.cache) >= maxCachedReviews {
		a.cache = map[[32]byte]cachedReview{}
	}
	a.cache[sum] = cachedReview{id: id, expires: expires}
	a.mu.Unlock()
	return id, nil
}

func (a *TokenReviewAuthenticator) review(ctx context.Context, token string) (ca.Identity, error) {
	req := &authnv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authnv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}
	body, err := runtime.DefaultUnstructuredConverter.ToUnstructured(req)
	if err != nil {
		return ca.Identity{}, status.Errorf(codes.Internal, "token review: %v", err)
	}
	out, err := a.client.Resource(tokenReviewGVR).Create(ctx, &unstructured.Unstructured{Object: body}, metav1.CreateOptions{})
	if err != nil {
		// The API server could not answer: the proxy should retry.
		return ca.Identity{}, status.Errorf(codes.Unavailable, "token review: %v", err)
	}
	var res authnv1.TokenReview
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(out.Object, &res); err != nil {
		return ca.Identity{}, status.Errorf(codes.Internal, "token review answer: %v", err)
	}
	return identityFromReview(&res.Status, a.audiences)
}

// identityFromReview applies Istio's checks to a review's answer: the token
// is authenticated, for one of our audiences, and a service account's.
func identityFromReview(st *authnv1.TokenReviewStatus, audiences []string) (ca.Identity, error) {
	refuse := func(format string, args ...any) (ca.Identity, error) {
		return ca.Identity{}, status.Errorf(codes.Unauthenticated, "service-account token refused: "+format, args...)
	}
	if st.Error != "" {
		return refuse("%s", st.Error)
	}
	if !st.Authenticated {
		return refuse("the API server did not authenticate it")
	}
	if len(st.Audiences) > 0 && !overlaps(st.Audiences, audiences) {
		return refuse("it is for audiences %v, not %v", st.Audiences, audiences)
	}
	if !overlaps(st.User.Groups, []string{"system:serviceaccounts"}) {
		return refuse("user %q is not a service account", st.User.Username)
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return refuse("username %q is not system:serviceaccount:<namespace>:<name>", st.User.Username)
	}
	id := ca.Identity{Namespace: parts[2], ServiceAccount: parts[3]}
	// A bound (projected) token names its pod: xDS binds the node ID to it.
	if pods := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(pods) == 1 {
		id.Pod = pods[0]
	}
	return id, nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// jwtExpiry reads a JWT's exp claim without verifying it (the review did),
// so a cached success never outlives the token.
func jwtExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Int64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(exp, 0), true
}

// String names the authenticator in logs.
func (a *TokenReviewAuthenticator) String() string {
	return fmt.Sprintf("TokenReview(audiences=%v)", a.audiences)
}
