// Package ca is the mesh certificate authority run by skein discovery, like
// istiod's Citadel: a self-signed root (persisted so restarts keep the same
// trust) or a plugged-in CA from Istio's cacerts files, signing workload
// CSRs into short-lived SPIFFE certificates. The identity in a certificate
// comes from the authenticated caller, never from the CSR.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Files of a self-signed CA directory.
const (
	selfRootCertFile = "root-cert.pem"
	selfRootKeyFile  = "root-key.pem"
)

// Files of Istio's plug-in CA layout (the cacerts secret).
const (
	PluginCACertFile    = "ca-cert.pem"
	PluginCAKeyFile     = "ca-key.pem"
	PluginRootCertFile  = "root-cert.pem"
	PluginCertChainFile = "cert-chain.pem"
)

// Options configure a CA.
type Options struct {
	// Dir keeps the self-signed root across restarts (empty: in memory).
	Dir string
	// PluginDir, when set, holds Istio's cacerts files; the CA then signs
	// with ca-cert.pem/ca-key.pem instead of a self-signed root.
	PluginDir   string
	TrustDomain string        // default cluster.local
	DefaultTTL  time.Duration // when the request asks for none (default 24h)
	MaxTTL      time.Duration // requests are clamped to it (default 90 days)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CA signs workload certificates.
type CA struct {
	opts     Options
	signer   crypto.Signer
	cert     *x509.Certificate // signing certificate
	chainPEM []byte            // from the signing cert up to (and maybe including) the root
	root     *x509.Certificate
	rootPEM  []byte
}

// New loads or creates the CA.
func New(opts Options) (*CA, error) {
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = 24 * time.Hour
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 90 * 24 * time.Hour
	}
	if opts.DefaultTTL > opts.MaxTTL {
		return nil, fmt.Errorf("ca: default certificate TTL %v exceeds the maximum %v", opts.DefaultTTL, opts.MaxTTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &CA{opts: opts}
	var err error
	if opts.PluginDir != "" {
		err = c.loadPlugin(opts.PluginDir)
	} else {
		err = c.loadOrCreateSelfSigned(opts.Dir)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// TrustDomain is the SPIFFE trust domain of issued identities.
func (c *CA) TrustDomain() string { return c.opts.TrustDomain }

// RootPEM is the trust anchor every workload verifies peers with.
func (c *CA) RootPEM() []byte { return bytes.Clone(c.rootPEM) }

// Root is the parsed root certificate.
func (c *CA) Root() *x509.Certificate { return c.root }

// loadPlugin reads Istio's plug-in CA files.
func (c *CA) loadPlugin(dir string) error {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("ca: plug-in CA (--cacerts %s): %w", dir, err)
		}
		return b, nil
	}
	certPEM, err := read(PluginCACertFile)
	if err != nil {
		return err
	}
	keyPEM, err := read(PluginCAKeyFile)
	if err != nil {
		return err
	}
	rootPEM, err := read(PluginRootCertFile)
	if err != nil {
		return err
	}
	chainPEM, err := read(PluginCertChainFile)
	if err != nil {
		return err
	}
	if c.cert, err = parseCert(certPEM); err != nil {
		return fmt.Errorf("ca: %s: %w", filepath.Join(dir, PluginCACertFile), err)
	}
	if c.signer, err = parseKey(keyPEM); err != nil {
		return fmt.Errorf("ca: %s: %w", filepath.Join(dir, PluginCAKeyFile), err)
	}
	if c.root, err = parseCert(rootPEM); err != nil {
		return fmt.Errorf("ca: %s: %w", filepath.Join(dir, PluginRootCertFile), err)
	}
	if !c.cert.IsCA {
		return fmt.Errorf("ca: %s: not a CA certificate (basicConstraints CA:FALSE)", filepath.Join(dir, PluginCACertFile))
	}
	if !publicKeyMatches(c.cert, c.signer) {
		return fmt.Errorf("ca: %s does not match the key in %s", PluginCACertFile, PluginCAKeyFile)
	}
	// The signing certificate must chain to the root through cert-chain.pem.
	inter := x509.NewCertPool()
	rest := chainPEM
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		ic, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("ca: %s: %w", filepath.Join(dir, PluginCertChainFile), err)
		}
		inter.AddCert(ic)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.root)
	if _, err := c.cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: c.opts.Now()}); err != nil {
		return fmt.Errorf("ca: %s does not chain to %s through %s: %w", PluginCACertFile, PluginRootCertFile, PluginCertChainFile, err)
	}
	c.rootPEM = pemCert(c.root.Raw)
	c.chainPEM = bytes.TrimSpace(chainPEM)
	return nil
}

// loadOrCreateSelfSigned reuses the root in dir or makes a new one.
func (c *CA) loadOrCreateSelfSigned(dir string) error {
	if dir != "" {
		certPEM, errC := os.ReadFile(filepath.Join(dir, selfRootCertFile))
		keyPEM, errK := os.ReadFile(filepath.Join(dir, selfRootKeyFile))
		switch {
		case errC == nil && errK == nil:
			var err error
			if c.cert, err = parseCert(certPEM); err != nil {
				return fmt.Errorf("ca: %s: %w", filepath.Join(dir, selfRootCertFile), err)
			}
			if c.signer, err = parseKey(keyPEM); err != nil {
				return fmt.Errorf("ca: %s: %w", filepath.Join(dir, selfRootKeyFile), err)
			}
			if !publicKeyMatches(c.cert, c.signer) {
				return fmt.Errorf("ca: %s does not match %s in %s", selfRootCertFile, selfRootKeyFile, dir)
			}
			c.root, c.rootPEM = c.cert, pemCert(c.cert.Raw)
			return nil
		case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
		case errC != nil && !errors.Is(errC, fs.ErrNotExist):
			return fmt.Errorf("ca: %w", errC)
		case errK != nil && !errors.Is(errK, fs.ErrNotExist):
			return fmt.Errorf("ca: %w", errK)
		default:
			return fmt.Errorf("ca: %s holds only one of %s and %s; remove it or restore the other", dir, selfRootCertFile, selfRootKeyFile)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := c.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{c.opts.TrustDomain}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("ca: creating the root: %w", err)
	}
	if c.cert, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	c.signer, c.root, c.rootPEM = key, c.cert, pemCert(der)
	if dir == "" {
		return nil
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	// The key first: a root certificate without its key would be useless.
	if err := writeFileAtomic(filepath.Join(dir, selfRootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, selfRootCertFile), c.rootPEM, 0o644)
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM private key block")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", key)
	}
	return s, nil
}

func publicKeyMatches(cert *x509.Certificate, s crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(s.Public())
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// writeFileAtomic writes via a temporary file and rename so a crash never
// leaves half a key behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// PluginFiles returns this CA in Istio's plug-in layout (the cacerts
// Secret's keys), so an in-cluster control plane given them signs under
// the same root as this one: `skein install` uses it to keep one mesh
// identity across a laptop control plane and istiod.
func (c *CA) PluginFiles() (map[string][]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: encoding the signing key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
	chain := bytes.Clone(c.chainPEM)
	if len(chain) == 0 { // self-signed: the chain is the root itself, as Istio writes it
		chain = certPEM
	}
	return map[string][]byte{
		PluginCACertFile:    certPEM,
		PluginCAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		PluginRootCertFile:  bytes.Clone(c.rootPEM),
		PluginCertChainFile: chain,
	}, nil
}
