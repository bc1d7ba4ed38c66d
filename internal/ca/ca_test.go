package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// csrFor makes a CSR that asks for whatever SANs the caller likes.
func csrFor(t *testing.T, uris ...string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}, DNSNames: []string{"evil.example"}}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func parseChain(t *testing.T, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, s := range chain {
		rest := []byte(s)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
	}
	return out
}

func TestSignUsesOnlyTheAuthenticatedIdentity(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A CSR asking for another identity is refused ...
	other, _ := csrFor(t, "spiffe://cluster.local/ns/istio-system/sa/istiod")
	var mismatch *IdentityMismatchError
	if _, err := c.Sign(other, Identity{Namespace: "bookinfo", ServiceAccount: "bookinfo-productpage"}, 0); !errors.As(err, &mismatch) {
		t.Fatalf("CSR for istiod with productpage's identity: %v, want IdentityMismatchError", err)
	}
	// ... and one naming none gets the caller's, nothing else of the CSR.
	csr, key := csrFor(t)
	chain, err := c.Sign(csr, Identity{Namespace: "bookinfo", ServiceAccount: "bookinfo-productpage"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, chain)
	if len(certs) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and root", len(certs))
	}
	leaf := certs[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage" {
		t.Errorf("URI SANs = %v", leaf.URIs)
	}
	if len(leaf.DNSNames) != 0 || leaf.Subject.CommonName != "" {
		t.Errorf("CSR's subject/DNS names leaked into the leaf: %q %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("leaf does not certify the CSR's key")
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[1])
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 24*time.Hour {
		t.Errorf("default TTL = %v, want 24h", got)
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := csrFor(t)
	tampered := []byte(strings.Replace(string(csr), "A", "B", 1))
	for name, tc := range map[string]struct {
		csr []byte
		id  Identity
	}{
		"not PEM":         {[]byte("hello"), Identity{Namespace: "ns", ServiceAccount: "sa"}},
		"bad signature":   {tampered, Identity{Namespace: "ns", ServiceAccount: "sa"}},
		"no namespace":    {csr, Identity{Namespace: "", ServiceAccount: "sa"}},
		"no service acct": {csr, Identity{Namespace: "ns", ServiceAccount: ""}},
	} {
		if _, err := c.Sign(tc.csr, tc.id, 0); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestTTLClamping(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := New(Options{DefaultTTL: time.Hour, MaxTTL: 48 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ask, want time.Duration }{
		{0, time.Hour},
		{4 * time.Second, 4 * time.Second},
		{time.Millisecond, time.Second},
		{72 * time.Hour, 48 * time.Hour},
		{30 * time.Minute, 30 * time.Minute},
	} {
		csr, _ := csrFor(t)
		chain, err := c.Sign(csr, Identity{Namespace: "ns", ServiceAccount: "sa"}, tc.ask)
		if err != nil {
			t.Fatal(err)
		}
		leaf := parseChain(t, chain)[0]
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tc.want {
			t.Errorf("asked %v: got %v, want %v", tc.ask, got, tc.want)
		}
	}
	if _, err := New(Options{DefaultTTL: 72 * time.Hour, MaxTTL: time.Hour}); err == nil {
		t.Error("default TTL above the maximum accepted")
	}
}

func TestPersistedRootSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, selfRootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("root key mode %v, want 0600", st.Mode().Perm())
	}
	b, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Root().Equal(b.Root()) {
		t.Fatal("reopened CA has a different root")
	}
	if a.Root().NotAfter.Sub(a.Root().NotBefore) < 9*365*24*time.Hour {
		t.Errorf("root lifetime %v, want ~10 years", a.Root().NotAfter.Sub(a.Root().NotBefore))
	}
	// A certificate from the first instance verifies with the second's root.
	csr, _ := csrFor(t)
	chain, err := a.Sign(csr, Identity{Namespace: "ns", ServiceAccount: "sa"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.RootPEM())
	if _, err := parseChain(t, chain)[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Error(err)
	}
	// Half a CA is an error, not a silent new root.
	os.Remove(filepath.Join(dir, selfRootKeyFile))
	if _, err := New(Options{Dir: dir}); err == nil {
		t.Error("opened a CA directory without its key")
	}
}

// writePluginCA makes root → intermediate in Istio's cacerts layout.
func writePluginCA(t *testing.T, dir string) (root, inter *x509.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "Test Root CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interTmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "Test Intermediate CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 100 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ = x509.ParseCertificate(interDER)
	keyDER, _ := x509.MarshalECPrivateKey(interKey)
	files := map[string][]byte{
		PluginCACertFile:    pemCert(interDER),
		PluginCAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		PluginRootCertFile:  pemCert(rootDER),
		PluginCertChainFile: append(pemCert(interDER), pemCert(rootDER)...),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, inter
}

func TestPluginCAChainsThroughIntermediate(t *testing.T) {
	dir := t.TempDir()
	root, inter := writePluginCA(t, dir)
	c, err := New(Options{PluginDir: dir, TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Root().Equal(root) {
		t.Error("root is not root-cert.pem")
	}
	csr, _ := csrFor(t)
	chain, err := c.Sign(csr, Identity{Namespace: "bookinfo", ServiceAccount: "reviews"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, chain)
	if len(certs) < 3 || !certs[1].Equal(inter) || !certs[len(certs)-1].Equal(root) {
		t.Fatalf("chain = %d certs, want leaf, cert-chain.pem (intermediate...), root", len(certs))
	}
	leaf := certs[0]
	if leaf.URIs[0].String() != "spiffe://example.org/ns/bookinfo/sa/reviews" {
		t.Errorf("URI = %v", leaf.URIs)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
	// Without the intermediate the leaf must not verify: it was signed by it.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("leaf verified without the intermediate: not signed by ca-cert.pem")
	}
}

func TestPluginCARefusesMismatchedFiles(t *testing.T) {
	dir := t.TempDir()
	writePluginCA(t, dir)
	other := t.TempDir()
	writePluginCA(t, other)
	// ca-key.pem from another CA.
	b, _ := os.ReadFile(filepath.Join(other, PluginCAKeyFile))
	os.WriteFile(filepath.Join(dir, PluginCAKeyFile), b, 0o600)
	if _, err := New(Options{PluginDir: dir}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: err = %v", err)
	}
	// root-cert.pem of another CA.
	dir2 := t.TempDir()
	writePluginCA(t, dir2)
	b, _ = os.ReadFile(filepath.Join(other, PluginRootCertFile))
	os.WriteFile(filepath.Join(dir2, PluginRootCertFile), b, 0o600)
	os.WriteFile(filepath.Join(dir2, PluginCertChainFile), nil, 0o600)
	if _, err := New(Options{PluginDir: dir2}); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("foreign root: err = %v", err)
	}
	if _, err := New(Options{PluginDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), PluginCACertFile) {
		t.Errorf("empty dir: err = %v", err)
	}
}

// A control plane given PluginFiles as its cacerts signs under the
// original root: what lets skein install hand a laptop CA to istiod.
func TestPluginFilesRoundTrip(t *testing.T) {
	self, err := New(Options{Dir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	files, err := self.PluginFiles()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plugin, err := New(Options{PluginDir: dir})
	if err != nil {
		t.Fatalf("loading PluginFiles as a plug-in CA: %v", err)
	}
	if !plugin.Root().Equal(self.Root()) {
		t.Fatal("plug-in CA has a different root")
	}
	csr, _ := csrFor(t)
	chain, err := plugin.Sign(csr, Identity{Namespace: "ns", ServiceAccount: "sa"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseChain(t, chain)[0]
	roots := x509.NewCertPool()
	roots.AddCert(self.Root())
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("certificate from the plug-in CA does not verify with the original root: %v", err)
	}
}
