package discovery

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"google.golang.org/grpc"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/proxy/secrets"
)

// TestWorkloadCertificateFlow runs the control plane, registers a Pod,
// issues its token over the config API and lets the proxy's secret
// manager get a certificate over the xDS port, as `skein up` does.
func TestWorkloadCertificateFlow(t *testing.T) {
	data := t.TempDir()
	srv, err := New(Options{StoreDir: filepath.Join(data, "store"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The CA directory defaults to <store-dir>/../ca; the admin token is 0600.
	adminFile := filepath.Join(data, "ca", "admin-token")
	st, err := os.Stat(adminFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token: %v %v", st, err)
	}
	admin, _ := os.ReadFile(adminFile)

	api := apiclient.NewWithToken(srv.HTTPAddr(), srv.AdminToken())
	pod := &corev1.Pod{Spec: corev1.PodSpec{ServiceAccountName: "bookinfo-ratings", Containers: []corev1.Container{{Name: "ratings", Image: "ratings"}}}}
	pod.Name, pod.Namespace = "ratings-v1-abc", "bookinfo"
	if _, err := api.Apply(ctx, []*config.Object{{
		GVK: config.GVK{Version: "v1", Kind: "Pod"}, Meta: config.Meta{Name: pod.Name, Namespace: pod.Namespace}, Spec: pod,
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.IssueToken(ctx, "wrong", "bookinfo", pod.Name); err == nil {
		t.Fatal("token issued without the admin token")
	}
	if _, err := api.IssueToken(ctx, strings.TrimSpace(string(admin)), "bookinfo", "nope"); !apiclient.IsNotFound(err) {
		t.Fatalf("token for a missing pod: %v", err)
	}
	tok, err := api.IssueToken(ctx, strings.TrimSpace(string(admin)), "bookinfo", pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ServiceAccount != "bookinfo-ratings" {
		t.Errorf("token service account %q", tok.ServiceAccount)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(tok.Token), 0o600)

	m, err := secrets.New(secrets.Options{
		CAAddress: srv.GRPCAddr(), TokenFile: tokenFile, Namespace: "bookinfo", ServiceAccount: "bookinfo-ratings",
		CertTTL: time.Hour, Logger: slog.New(slog.DiscardHandler), DialOptions: []grpc.DialOption{tlsDial(srv)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	startCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if err := m.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	c, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Leaf.URIs[0].String(); got != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings" {
		t.Errorf("identity %s", got)
	}
	if c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) != time.Hour {
		t.Errorf("lifetime %v", c.Leaf.NotAfter.Sub(c.Leaf.NotBefore))
	}
	if _, err := c.Leaf.Verify(x509Opts(srv)); err != nil {
		t.Errorf("certificate does not chain to the CA root: %v", err)
	}

	// A proxy claiming another service account gets nothing.
	wrong, _ := secrets.New(secrets.Options{
		CAAddress: srv.GRPCAddr(), TokenFile: tokenFile, Namespace: "bookinfo", ServiceAccount: "bookinfo-productpage",
		Logger: slog.New(slog.DiscardHandler), DialOptions: []grpc.DialOption{tlsDial(srv)},
	})
	defer wrong.Close()
	short, stop2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop2()
	if err := wrong.Start(short); err == nil {
		t.Error("a proxy got a certificate for a service account its token does not name")
	}

	// The pod goes away: its token stops working.
	if _, err := api.Delete(ctx, []config.Key{{Kind: "Pod", Namespace: "bookinfo", Name: pod.Name}}); err != nil {
		t.Fatal(err)
	}
	gone, _ := secrets.New(secrets.Options{
		CAAddress: srv.GRPCAddr(), TokenFile: tokenFile, Namespace: "bookinfo", ServiceAccount: "bookinfo-ratings",
		Logger: slog.New(slog.DiscardHandler), DialOptions: []grpc.DialOption{tlsDial(srv)},
	})
	defer gone.Close()
	short2, stop3 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop3()
	if err := gone.Start(short2); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("deleted pod's token: %v", err)
	}
}

func x509Opts(srv *Server) x509.VerifyOptions {
	roots := x509.NewCertPool()
	roots.AddCert(srv.CA().Root())
	return x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// TestInMemoryCredentialFile: a control plane without a store or CA
// directory writes its admin credential 0600 where the CLI looks, and a
// second one adopts the owner's existing credential instead of replacing it.
func TestInMemoryCredentialFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "home", "ca", "admin-token")
	newServer := func() *Server {
		srv, err := New(Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", CA: CAOptions{CredentialFile: path}}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	first := newServer()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v, want mode 0600", st, err)
	}
	b, _ := os.ReadFile(path)
	if got := strings.TrimSpace(string(b)); got != first.AdminToken() || got == "" {
		t.Fatalf("file holds %q, server uses %q", got, first.AdminToken())
	}
	if second := newServer(); second.AdminToken() != first.AdminToken() {
		t.Errorf("second control plane made a new credential instead of adopting the file's")
	}
	// Without a file the credential stays in memory: nothing is written.
	srv, err := New(Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil || srv.AdminToken() == "" {
		t.Fatalf("in-memory control plane: %v, token %q", err, srv.AdminToken())
	}
}
