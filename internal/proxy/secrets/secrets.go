// Package secrets is the proxy's secret manager, the part of istio-agent that
// serves SDS: it generates a key pair, asks the mesh CA (Istio's
// IstioCertificateService/CreateCertificate over gRPC) to sign a CSR with the
// workload's token, verifies the answer, and rotates the certificate at a
// fraction of its lifetime. Listeners and clusters read the current
// certificate through Certificate on every handshake, so a rotation never
// drops a connection.
package secrets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Secret names as istio-agent serves them over SDS.
const (
	WorkloadSecretName = "default"
	RootSecretName     = "ROOTCA"
)

// Options configure a Manager.
type Options struct {
	// CAAddress is the gRPC host:port of the CA (skein discovery's xDS port).
	CAAddress string
	// TokenFile holds the workload's bearer token; it is re-read for every
	// request so a refreshed token is picked up.
	TokenFile string
	// TrustDomain of the SPIFFE identity (default cluster.local).
	TrustDomain    string
	Namespace      string
	ServiceAccount string
	// CertTTL is the lifetime asked for; 0 lets the CA choose.
	CertTTL time.Duration
	// RotationRatio is the fraction of a certificate's lifetime after which
	// it is renewed (default 0.5).
	RotationRatio float64
	// Clock drives rotation and retries (default: the real clock).
	Clock Clock
	// Stats receives skein.secrets.* metrics (optional).
	Stats  *stats.Store
	Logger *slog.Logger
	// DialOptions replace the default plaintext credentials (tests, TLS).
	DialOptions []grpc.DialOption
}

// Manager holds the workload certificate and keeps it fresh.
type Manager struct {
	opts   Options
	log    *slog.Logger
	clock  Clock
	id     string
	conn   *grpc.ClientConn
	client securityv1.IstioCertificateServiceClient

	current   atomic.Pointer[bundle]
	rotations atomic.Int64
	failures  *stats.Counter
	rotated   *stats.Counter
	expiry    *stats.Gauge

	startOnce sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
	done      chan struct{}
}

// New validates opts and prepares the connection to the CA (gRPC connects
// lazily, so New never blocks).
func New(opts Options) (*Manager, error) {
	if opts.CAAddress == "" {
		return nil, errors.New("secrets: Options.CAAddress is required")
	}
	if opts.Namespace == "" || opts.ServiceAccount == "" {
		return nil, errors.New("secrets: Options.Namespace and Options.ServiceAccount are required")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	if opts.RotationRatio <= 0 || opts.RotationRatio >= 1 {
		opts.RotationRatio = 0.5
	}
	if opts.CertTTL < 0 {
		return nil, fmt.Errorf("secrets: Options.CertTTL %v is negative", opts.CertTTL)
	}
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	dial := opts.DialOptions
	if dial == nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(opts.CAAddress, dial...)
	if err != nil {
		return nil, fmt.Errorf("secrets: CA address %q: %w", opts.CAAddress, err)
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger.With("component", "secrets"),
		clock:    opts.Clock,
		id:       SPIFFEID(opts.TrustDomain, opts.Namespace, opts.ServiceAccount),
		conn:     conn,
		client:   securityv1.NewIstioCertificateServiceClient(conn),
		failures: opts.Stats.Counter("skein.secrets.fetch_failures"),
		rotated:  opts.Stats.Counter("skein.secrets.rotations"),
		expiry:   opts.Stats.Gauge("server.days_until_first_cert_expiring"),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	return m, nil
}

// SPIFFEID is Istio's workload identity URI.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// Start fetches the first certificate, retrying with backoff until it
// succeeds or ctx ends, then rotates in the background until Close.
func (m *Manager) Start(ctx context.Context) error {
	started := false
	var err error
	m.startOnce.Do(func() {
		started = true
		backoff := newBackoff()
		for {
			var b *bundle
			if b, err = m.fetch(ctx); err == nil {
				m.install(b)
				break
			}
			m.failures.Inc()
			wait := backoff.next()
			m.log.Warn("fetching workload certificate failed; retrying", "identity", m.id, "error", err, "retryIn", wait)
			select {
			case <-ctx.Done():
				err = fmt.Errorf("secrets: first certificate for %s: %w (last error: %v)", m.id, ctx.Err(), err)
				close(m.done)
				return
			case <-m.stop:
				err = fmt.Errorf("secrets: closed before the first certificate for %s", m.id)
				close(m.done)
				return
			case <-m.clock.After(wait):
			}
		}
		go m.rotateLoop()
	})
	if !started {
		return errors.New("secrets: Start called twice")
	}
	return err
}

// Close stops rotation and closes the connection to the CA.
func (m *Manager) Close() {
	m.stopOnce.Do(func() { close(m.stop) })
	if m.current.Load() != nil {
		<-m.done
	}
	m.conn.Close()
}

// Certificate is the current workload certificate with its private key and
// intermediates. It never returns an expired certificate.
func (m *Manager) Certificate() (*tls.Certificate, error) {
	b := m.current.Load()
	if b == nil {
		return nil, fmt.Errorf("secrets: no certificate for %s yet", m.id)
	}
	if now := m.clock.Now(); !now.Before(b.leaf.NotAfter) {
		return nil, fmt.Errorf("secrets: certificate for %s expired at %s and was not renewed", m.id, b.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return b.cert, nil
}

// Roots is the trust bundle: the mesh CA's root (nil before the first
// certificate).
func (m *Manager) Roots() *x509.CertPool {
	if b := m.current.Load(); b != nil {
		return b.roots
	}
	return nil
}

// SPIFFEID is the identity this proxy holds.
func (m *Manager) SPIFFEID() string { return m.id }

// TrustDomain is the identity's trust domain.
func (m *Manager) TrustDomain() string { return m.opts.TrustDomain }

// Rotations counts certificates installed after the first.
func (m *Manager) Rotations() int64 { return m.rotations.Load() }

// install makes b current.
func (m *Manager) install(b *bundle) {
	prev := m.current.Swap(b)
	if prev != nil {
		m.rotations.Add(1)
		m.rotated.Inc()
	}
	m.expiry.Set(int64(b.leaf.NotAfter.Sub(m.clock.Now()) / (24 * time.Hour)))
	m.log.Info("workload certificate installed", "identity", m.id, "serial", b.leaf.SerialNumber.Text(16),
		"notAfter", b.leaf.NotAfter.UTC().Format(time.RFC3339), "rotation", prev != nil)
}

// rotateLoop renews the certificate at RotationRatio of its lifetime and,
// on failure, retries with backoff while the old certificate keeps serving.
func (m *Manager) rotateLoop() {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		b := m.current.Load()
		wait := b.rotateAt(m.opts.RotationRatio).Sub(m.clock.Now())
		select {
		case <-m.stop:
			return
		case <-m.clock.After(wait):
		}
		backoff := newBackoff()
		for {
			nb, err := m.fetch(ctx)
			if err == nil {
				m.install(nb)
				break
			}
			m.failures.Inc()
			retry := backoff.next()
			// Retry faster than the backoff while the old certificate
			// is about to expire: short-lived certs need it.
			if left := b.leaf.NotAfter.Sub(m.clock.Now()); left > 0 && retry > left/4 {
				retry = max(left/4, 50*time.Millisecond)
			}
			m.log.Warn("rotating workload certificate failed; keeping the current one", "identity", m.id,
				"error", err, "retryIn", retry, "notAfter", b.leaf.NotAfter.UTC().Format(time.RFC3339))
			select {
			case <-m.stop:
				return
			case <-m.clock.After(retry):
			}
		}
	}
}

// backoff doubles from 100 ms up to 10 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = 100 * time.Millisecond
	case b.d < 10*time.Second:
		b.d = min(2*b.d, 10*time.Second)
	}
	return b.d
}
