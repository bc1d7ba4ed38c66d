package secrets

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// fakeClock moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Advance moves time and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waitForTimer blocks until someone waits on the clock and answers how
// long until the earliest timer fires.
func (c *fakeClock) waitForTimer(t *testing.T) time.Duration {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		if len(c.waiters) > 0 {
			next := c.waiters[0].at
			for _, w := range c.waiters {
				if w.at.Before(next) {
					next = w.at
				}
			}
			d := next.Sub(c.now)
			c.mu.Unlock()
			return d
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatal("nobody waits on the clock")
	return 0
}

// testCA is a real IstioCertificateService with a root of its own, whose
// answers the test can spoil.
type testCA struct {
	securityv1.UnimplementedIstioCertificateServiceServer
	clock *fakeClock
	key   *ecdsa.PrivateKey
	root  *x509.Certificate

	mu      sync.Mutex
	fail    bool
	uri     string // identity to put in certificates instead of the caller's
	token   string // expected bearer token
	calls   int
	lastTTL int64
}

func newTestCA(t *testing.T, clock *fakeClock) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: clock.Now().Add(-time.Hour), NotAfter: clock.Now().Add(1000 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testCA{clock: clock, key: key, root: root, token: "tok-1", uri: ""}
}

func (ca *testCA) set(f func(*testCA)) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	f(ca)
}

func (ca *testCA) CreateCertificate(ctx context.Context, req *securityv1.IstioCertificateRequest) (*securityv1.IstioCertificateResponse, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.calls++
	ca.lastTTL = req.ValidityDuration
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+ca.token {
		return nil, status.Errorf(codes.Unauthenticated, "bad token %v", got)
	}
	if ca.fail {
		return nil, status.Error(codes.Unavailable, "CA down")
	}
	block, _ := pem.Decode([]byte(req.Csr))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	uri := csr.URIs[0]
	if ca.uri != "" {
		uri, _ = url.Parse(ca.uri)
	}
	now := ca.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(ca.calls + 100)),
		NotBefore:    now, NotAfter: now.Add(time.Duration(req.ValidityDuration) * time.Second),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, csr.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	return &securityv1.IstioCertificateResponse{CertChain: []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})),
	}}, nil
}

// setup serves a testCA on loopback and builds a Manager for it.
func setup(t *testing.T, ttl time.Duration) (*Manager, *testCA, *fakeClock, *stats.Store) {
	t.Helper()
	clock := newFakeClock()
	ca := newTestCA(t, clock)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	securityv1.RegisterIstioCertificateServiceServer(g, ca)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := stats.NewStore()
	m, err := New(Options{
		CAAddress: lis.Addr().String(), TokenFile: tokenFile, Namespace: "bookinfo", ServiceAccount: "bookinfo-reviews",
		CertTTL: ttl, Clock: clock, Stats: st, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, ca, clock, st
}

func start(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

func serial(t *testing.T, m *Manager) string {
	t.Helper()
	c, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFirstCertificate(t *testing.T) {
	m, ca, _, _ := setup(t, 10*time.Second)
	if _, err := m.Certificate(); err == nil {
		t.Error("a certificate before Start")
	}
	start(t, m)
	c, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Leaf.URIs[0].String(); got != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews" || got != m.SPIFFEID() {
		t.Errorf("identity %s", got)
	}
	if ca.lastTTL != 10 {
		t.Errorf("asked validity_duration %d, want 10", ca.lastTTL)
	}
	if len(c.Certificate) != 1 {
		t.Errorf("chain has %d certificates; the root must not be sent", len(c.Certificate))
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: m.Roots(), CurrentTime: c.Leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify with Roots(): %v", err)
	}
}

func TestRotatesAtHalfLife(t *testing.T) {
	m, _, clock, st := setup(t, 10*time.Second)
	start(t, m)
	first := serial(t, m)
	if d := clock.waitForTimer(t); d != 5*time.Second {
		t.Fatalf("rotation scheduled in %v, want 5s (half of 10s)", d)
	}
	clock.Advance(4900 * time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if m.Rotations() != 0 || serial(t, m) != first {
		t.Fatal("rotated before half-life")
	}
	clock.Advance(100 * time.Millisecond)
	eventually(t, "rotation", func() bool { return m.Rotations() == 1 })
	if serial(t, m) == first {
		t.Error("serial unchanged after rotation")
	}
	if got := st.Counter("skein.secrets.rotations").Value(); got != 1 {
		t.Errorf("skein.secrets.rotations = %d", got)
	}
	// And again, relative to the new certificate.
	if d := clock.waitForTimer(t); d != 5*time.Second {
		t.Fatalf("second rotation scheduled in %v, want 5s", d)
	}
	clock.Advance(5 * time.Second)
	eventually(t, "second rotation", func() bool { return m.Rotations() == 2 })
}

func TestKeepsOldCertificateWhileCAFails(t *testing.T) {
	m, ca, clock, st := setup(t, 10*time.Second)
	start(t, m)
	first := serial(t, m)
	clock.waitForTimer(t)
	ca.set(func(ca *testCA) { ca.fail = true })
	clock.Advance(5 * time.Second) // half-life: the rotation attempt fails
	eventually(t, "a failed rotation", func() bool { return st.Counter("skein.secrets.fetch_failures").Value() >= 1 })
	if got := serial(t, m); got != first {
		t.Fatalf("serving %s after a failed rotation, want the old %s", got, first)
	}
	// Retries continue; past NotAfter the expired certificate is withheld.
	for i := 0; i < 50 && clock.Now().Before(time.Date(2030, 1, 1, 0, 0, 10, 0, time.UTC)); i++ {
		clock.Advance(clock.waitForTimer(t))
	}
	if _, err := m.Certificate(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Certificate() after NotAfter: err = %v, want expired", err)
	}
	if m.Rotations() != 0 {
		t.Fatal("counted a rotation that failed")
	}
	// The CA recovers: the next retry installs a fresh certificate.
	ca.set(func(ca *testCA) { ca.fail = false })
	clock.Advance(clock.waitForTimer(t))
	eventually(t, "recovery", func() bool { return m.Rotations() == 1 })
	if _, err := m.Certificate(); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesWrongIdentityOrToken(t *testing.T) {
	for name, spoil := range map[string]func(*testCA){
		"other identity": func(ca *testCA) { ca.uri = "spiffe://cluster.local/ns/istio-system/sa/istiod" },
		"token refused":  func(ca *testCA) { ca.token = "other" },
	} {
		t.Run(name, func(t *testing.T) {
			m, ca, _, st := setup(t, time.Minute)
			ca.set(spoil)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if err := m.Start(ctx); err == nil {
				t.Fatal("started with an unusable certificate")
			}
			if st.Counter("skein.secrets.fetch_failures").Value() == 0 {
				t.Error("no failure counted")
			}
			if _, err := m.Certificate(); err == nil {
				t.Error("Certificate() answered")
			}
		})
	}
}

func TestStartRetriesUntilTheCAAnswers(t *testing.T) {
	m, ca, clock, _ := setup(t, time.Minute)
	ca.set(func(ca *testCA) { ca.fail = true })
	errc := make(chan error, 1)
	go func() { errc <- m.Start(context.Background()) }()
	clock.Advance(clock.waitForTimer(t)) // first backoff: fails again
	eventually(t, "a second attempt", func() bool {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		return ca.calls == 2
	})
	d := clock.waitForTimer(t)
	if d != 200*time.Millisecond {
		t.Errorf("second backoff %v, want 200ms (doubling from 100ms)", d)
	}
	ca.set(func(ca *testCA) { ca.fail = false })
	clock.Advance(d)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after the CA recovered")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.calls != 3 {
		t.Errorf("%d calls, want 3", ca.calls)
	}
}

func TestConfigDumpRedactsKey(t *testing.T) {
	m, _, _, _ := setup(t, time.Hour)
	if d := m.ConfigDump(); len(d.DynamicActiveSecrets) != 0 {
		t.Error("secrets dumped before the first certificate")
	}
	start(t, m)
	d := m.ConfigDump()
	if len(d.DynamicActiveSecrets) != 2 {
		t.Fatalf("%d secrets", len(d.DynamicActiveSecrets))
	}
	var def, root tlsv3.Secret
	if err := d.DynamicActiveSecrets[0].Secret.UnmarshalTo(&def); err != nil {
		t.Fatal(err)
	}
	if err := d.DynamicActiveSecrets[1].Secret.UnmarshalTo(&root); err != nil {
		t.Fatal(err)
	}
	if def.Name != "default" || root.Name != "ROOTCA" {
		t.Errorf("names %q %q", def.Name, root.Name)
	}
	if k := def.GetTlsCertificate().GetPrivateKey().GetInlineString(); k != "[redacted]" {
		t.Errorf("private key dumped as %q", k)
	}
	block, _ := pem.Decode(def.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || c.SerialNumber.String() != serial(t, m) {
		t.Errorf("dumped chain is not the current certificate: %v", err)
	}
	if len(root.GetValidationContext().GetTrustedCa().GetInlineBytes()) == 0 {
		t.Error("ROOTCA has no trusted_ca")
	}
}

func TestNewValidates(t *testing.T) {
	for name, o := range map[string]Options{
		"no address":  {Namespace: "ns", ServiceAccount: "sa"},
		"no identity": {CAAddress: "127.0.0.1:1"},
		"negative":    {CAAddress: "127.0.0.1:1", Namespace: "ns", ServiceAccount: "sa", CertTTL: -time.Second},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	m, err := New(Options{CAAddress: "127.0.0.1:1", Namespace: "ns", ServiceAccount: "sa", TokenFile: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.fetch(context.Background()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing token file: %v", err)
	}
}
