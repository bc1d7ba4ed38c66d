package secrets

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	securityv1 "istio.io/api/security/v1alpha1"
)

// bundle is one issued certificate with everything derived from it.
type bundle struct {
	cert     *tls.Certificate
	leaf     *x509.Certificate
	chain    []*x509.Certificate // leaf first, then intermediates (no root)
	root     *x509.Certificate
	roots    *x509.CertPool
	received time.Time
}

// rotateAt is when the certificate should be renewed: ratio of the way
// from when it became usable here to its expiry.
func (b *bundle) rotateAt(ratio float64) time.Time {
	start := b.leaf.NotBefore
	if b.received.After(start) {
		start = b.received
	}
	life := b.leaf.NotAfter.Sub(start)
	return start.Add(time.Duration(float64(life) * ratio))
}

// fetch asks the CA for a certificate for a fresh key.
func (m *Manager) fetch(ctx context.Context) (*bundle, error) {
	token, err := m.token()
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	spiffe, _ := url.Parse(m.id)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{spiffe}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	req := &securityv1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
	}
	if m.opts.CertTTL > 0 {
		req.ValidityDuration = int64((m.opts.CertTTL + time.Second - 1) / time.Second)
	}
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if token != "" {
		callCtx = metadata.AppendToOutgoingContext(callCtx, "authorization", "Bearer "+token)
	}
	resp, err := m.client.CreateCertificate(callCtx, req)
	if err != nil {
		return nil, fmt.Errorf("CA %s: CreateCertificate: %w", m.opts.CAAddress, err)
	}
	b, err := m.verify(resp.GetCertChain(), key)
	if err != nil {
		return nil, fmt.Errorf("CA %s answered an unusable certificate: %w", m.opts.CAAddress, err)
	}
	b.received = m.clock.Now()
	return b, nil
}

// token reads the bearer token (empty without a token file).
func (m *Manager) token() (string, error) {
	if m.opts.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(m.opts.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", m.opts.TokenFile)
	}
	return t, nil
}

// verify checks an answered chain: [leaf, intermediates..., root] as PEM
// strings (one may hold several certificates). The leaf must carry exactly
// our identity and our public key and chain up to the root.
func (m *Manager) verify(chainPEM []string, key *ecdsa.PrivateKey) (*bundle, error) {
	var certs []*x509.Certificate
	for i, s := range chainPEM {
		rest := []byte(s)
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
			}
			certs = append(certs, c)
		}
	}
	if len(certs) < 2 {
		return nil, fmt.Errorf("cert_chain has %d certificates; want the leaf and the root at least", len(certs))
	}
	leaf, root := certs[0], certs[len(certs)-1]
	if !bytes.Equal(root.RawIssuer, root.RawSubject) || root.CheckSignatureFrom(root) != nil {
		return nil, errors.New("cert_chain: the last certificate is not a self-signed root")
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("cert_chain[0]: the leaf does not certify the key of our CSR")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != m.id {
		got := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			got[i] = u.String()
		}
		return nil, fmt.Errorf("cert_chain[0]: URI SANs %v, want exactly [%s]", got, m.id)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	chain := []*x509.Certificate{leaf}
	for _, c := range certs[1 : len(certs)-1] {
		if c.Equal(root) {
			continue // Istio's cert-chain.pem often ends with the root too
		}
		inter.AddCert(c)
		chain = append(chain, c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: m.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("cert_chain[0]: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &bundle{cert: cert, leaf: leaf, chain: chain, root: root, roots: roots}, nil
}
