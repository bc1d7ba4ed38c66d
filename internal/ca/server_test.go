package ca

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/skein-mesh/skein/internal/apiwire"
)

// pods is a fixed pod → service account table.
type pods map[string]string

func (p pods) lookup(ns, name string) (string, bool) {
	sa, ok := p[ns+"/"+name]
	return sa, ok
}

func TestTokens(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	tokens, err := OpenTokens(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenTokens(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := OpenTokens(t.TempDir(), clock)
	good := tokens.Issue(Claims{Namespace: "bookinfo", Pod: "productpage-v1-abc", ServiceAccount: "bookinfo-productpage"}, time.Hour)
	if c, err := reopened.Verify(good); err != nil || c.Pod != "productpage-v1-abc" || c.ServiceAccount != "bookinfo-productpage" {
		t.Fatalf("reopened key: %+v, %v", c, err)
	}
	// Forge: change the claims, keep the signature.
	i := strings.LastIndexByte(good, '.')
	forgedPayload, _ := json.Marshal(Claims{Namespace: "istio-system", Pod: "istiod", ServiceAccount: "istiod", Expiry: now.Add(time.Hour).Unix()})
	forged := tokenPrefix + b64(forgedPayload) + good[i:]
	expired := tokens.Issue(Claims{Namespace: "bookinfo", Pod: "p", ServiceAccount: "sa"}, -time.Second)
	for name, tok := range map[string]string{
		"forged claims":  forged,
		"other key":      otherKey.Issue(Claims{Namespace: "bookinfo", Pod: "p", ServiceAccount: "sa"}, time.Hour),
		"expired":        expired,
		"garbage":        "hello",
		"prefix only":    tokenPrefix,
		"truncated sig":  good[:len(good)-3],
		"missing claims": tokens.Issue(Claims{Namespace: "bookinfo"}, time.Hour),
	} {
		if _, err := tokens.Verify(tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	st, err := os.Stat(filepath.Join(dir, tokenKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token key: %v, %v", st, err)
	}
}

// serve runs the service on a loopback gRPC server.
func serve(t *testing.T, svc *Service) securityv1.IstioCertificateServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	svc.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1.NewIstioCertificateServiceClient(conn)
}

func TestCreateCertificateOverGRPC(t *testing.T) {
	authority, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := OpenTokens("", nil)
	table := pods{"bookinfo/productpage-1": "bookinfo-productpage", "bookinfo/ratings-1": "bookinfo-ratings"}
	client := serve(t, NewService(authority, &TokenAuthenticator{Tokens: tokens, Pods: table.lookup}, slog.New(slog.DiscardHandler)))
	call := func(token string, ttl int64) (*securityv1.IstioCertificateResponse, error) {
		csr, _ := csrFor(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return client.CreateCertificate(ctx, &securityv1.IstioCertificateRequest{Csr: string(csr), ValidityDuration: ttl})
	}

	tok := tokens.Issue(Claims{Namespace: "bookinfo", Pod: "productpage-1", ServiceAccount: "bookinfo-productpage"}, time.Hour)
	resp, err := call(tok, 5)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseChain(t, resp.CertChain)[0]
	if got := leaf.URIs[0].String(); got != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage" {
		t.Errorf("identity %s", got)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 5*time.Second {
		t.Errorf("TTL %v, want 5s", got)
	}

	for name, tc := range map[string]string{
		"no token":        "",
		"forged":          tok[:len(tok)-2] + "xx",
		"pod gone":        tokens.Issue(Claims{Namespace: "bookinfo", Pod: "productpage-0", ServiceAccount: "bookinfo-productpage"}, time.Hour),
		"wrong sa":        tokens.Issue(Claims{Namespace: "bookinfo", Pod: "ratings-1", ServiceAccount: "bookinfo-productpage"}, time.Hour),
		"expired":         tokens.Issue(Claims{Namespace: "bookinfo", Pod: "productpage-1", ServiceAccount: "bookinfo-productpage"}, -time.Minute),
		"other namespace": tokens.Issue(Claims{Namespace: "default", Pod: "productpage-1", ServiceAccount: "bookinfo-productpage"}, time.Hour),
	} {
		_, err := call(tc, 0)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: err = %v, want Unauthenticated", name, err)
		}
	}
	if _, err := call(tok, -1); status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative validity: %v", err)
	}
}

func TestTokenHandler(t *testing.T) {
	tokens, _ := OpenTokens("", nil)
	table := pods{"bookinfo/productpage-1": "bookinfo-productpage"}
	srv := httptest.NewServer(TokenHandler(tokens, "s3cret", table.lookup, time.Hour))
	defer srv.Close()
	post := func(auth, body string) (int, []byte) {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := post("Bearer s3cret", `{"namespace":"bookinfo","pod":"productpage-1"}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var tr apiwire.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	if c, err := tokens.Verify(tr.Token); err != nil || c.ServiceAccount != "bookinfo-productpage" || c.Pod != "productpage-1" {
		t.Errorf("issued token: %+v %v", c, err)
	}
	for _, tc := range []struct {
		auth, body string
		want       int
	}{
		{"", `{"namespace":"bookinfo","pod":"productpage-1"}`, 401},
		{"Bearer wrong", `{"namespace":"bookinfo","pod":"productpage-1"}`, 401},
		{"Bearer s3cret", `{"namespace":"bookinfo","pod":"nope"}`, 404},
		{"Bearer s3cret", `{"namespace":"bookinfo"}`, 400},
		{"Bearer s3cret", `{`, 400},
	} {
		if code, body := post(tc.auth, tc.body); code != tc.want || !bytes.Contains(body, []byte(`"error":`)) {
			t.Errorf("%q %s: %d %s, want %d", tc.auth, tc.body, code, body, tc.want)
		}
	}
}
