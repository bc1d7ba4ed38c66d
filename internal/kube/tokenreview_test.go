package kube

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skein-mesh/skein/internal/ca"
)

// reviewer answers TokenReviews from a table of tokens, like the API server.
func reviewer(t *testing.T, answers map[string]authnv1.TokenReviewStatus, calls *atomic.Int32) *TokenReviewAuthenticator {
	client := fakeClient()
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		u := action.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		var req authnv1.TokenReview
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &req); err != nil {
			t.Errorf("review request: %v", err)
		}
		if fmt.Sprint(req.Spec.Audiences) != "[istio-ca]" {
			t.Errorf("review audiences %v, want [istio-ca]", req.Spec.Audiences)
		}
		if req.Spec.Token == "api-down" {
			return true, nil, errors.New("connection refused")
		}
		req.Status = answers[req.Spec.Token]
		out, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&req)
		return true, &unstructured.Unstructured{Object: out}, nil
	})
	return NewTokenReviewAuthenticator(client, nil, time.Minute)
}

func withToken(token string) context.Context {
	if token == "" {
		return context.Background()
	}
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

func sa(ns, name string, aud ...string) authnv1.TokenReviewStatus {
	return authnv1.TokenReviewStatus{Authenticated: true, Audiences: aud,
		User: authnv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + name, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}}
}

func TestTokenReviewAuthenticator(t *testing.T) {
	answers := map[string]authnv1.TokenReviewStatus{
		"good":      sa("bookinfo", "bookinfo-reviews", "istio-ca"),
		"no-aud":    sa("default", "default"),
		"other-aud": sa("bookinfo", "x", "https://kubernetes.default.svc"),
		"user":      {Authenticated: true, User: authnv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}},
		"odd-name":  {Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:ns", Groups: []string{"system:serviceaccounts"}}},
		"expired":   {Error: "token has expired"},
		"unknown":   {Authenticated: false},
	}
	var calls atomic.Int32
	a := reviewer(t, answers, &calls)
	cases := []struct {
		token string
		want  ca.Identity
		code  codes.Code
		msg   string
	}{
		{token: "good", want: ca.Identity{Namespace: "bookinfo", ServiceAccount: "bookinfo-reviews"}},
		{token: "no-aud", want: ca.Identity{Namespace: "default", ServiceAccount: "default"}},
		{token: "other-aud", code: codes.Unauthenticated, msg: "audiences"},
		{token: "user", code: codes.Unauthenticated, msg: `user "alice" is not a service account`},
		{token: "odd-name", code: codes.Unauthenticated, msg: "is not system:serviceaccount:<namespace>:<name>"},
		{token: "expired", code: codes.Unauthenticated, msg: "token has expired"},
		{token: "unknown", code: codes.Unauthenticated, msg: "did not authenticate"},
		{token: "api-down", code: codes.Unavailable, msg: "connection refused"},
		{token: "", code: codes.Unauthenticated, msg: "no service-account token"},
	}
	for _, c := range cases {
		t.Run(c.token, func(t *testing.T) {
			got, err := a.Authenticate(withToken(c.token))
			if c.msg == "" {
				if err != nil || got != c.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
				}
				if id := got.SPIFFEID("cluster.local"); !strings.HasPrefix(id, "spiffe://cluster.local/ns/"+c.want.Namespace+"/sa/") {
					t.Errorf("SPIFFE ID %s", id)
				}
				return
			}
			if status.Code(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %v, want %s containing %q", err, c.code, c.msg)
			}
		})
	}
}

func TestTokenReviewCache(t *testing.T) {
	exp := time.Date(2026, 12, 2, 10, 1, 31, 0, time.UTC) // 30s after the jwt steps start
	jwt := "h." + base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"exp":%d}`, exp.Unix()))) + ".sig"
	var calls atomic.Int32
	a := reviewer(t, map[string]authnv1.TokenReviewStatus{"good": sa("ns", "sa"), jwt: sa("ns", "jwt"), "unknown": {}}, &calls)
	clock := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return clock }
	steps := []struct {
		token   string
		advance time.Duration
		calls   int32 // total reviews so far
	}{
		{"good", 0, 1},
		{"good", 30 * time.Second, 1}, // cached
		{"good", 31 * time.Second, 2}, // the minute is over
		{jwt, 0, 3},
		{jwt, 29 * time.Second, 3},
		{jwt, 2 * time.Second, 4}, // the token's exp came before the minute
		{"unknown", 0, 5},
		{"unknown", 0, 6}, // failures are not cached
	}
	for i, st := range steps {
		clock = clock.Add(st.advance)
		_, _ = a.Authenticate(withToken(st.token))
		if got := calls.Load(); got != st.calls {
			t.Errorf("step %d (%s): %d reviews, want %d", i, st.token, got, st.calls)
		}
	}
}
