package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Identity is who a certificate is for, as established by an
// Authenticator.
type Identity struct {
	Namespace      string
	ServiceAccount string
	// Pod is the pod the token was issued to, when the token names one
	// (Skein's workload tokens, Kubernetes' bound tokens).
	Pod string
}

// SPIFFEID is Istio's identity URI in trustDomain.
func (id Identity) SPIFFEID(trustDomain string) string {
	return "spiffe://" + trustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// MinTTL is the shortest certificate lifetime the CA issues.
const MinTTL = time.Second

// Sign turns a PEM CSR into a leaf certificate for id and answers the chain
// as IstioCertificateService does: [leaf, the CA's cert-chain (plug-in CA
// only), root], each element PEM. Only the CSR's public key is used: the
// subject and SANs it asks for are ignored, so a workload cannot claim
// another identity. ttl 0 means the default; longer than the maximum is
// clamped.
func (c *CA) Sign(csrPEM []byte, id Identity, ttl time.Duration) ([]string, error) {
	if id.Namespace == "" || id.ServiceAccount == "" {
		return nil, errors.New("ca: identity needs a namespace and a service account")
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("ca: csr: no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: csr: signature: %w", err)
	}
	if err := c.checkRequestedIdentity(csr, id); err != nil {
		return nil, err
	}
	ttl = c.TTL(ttl)
	uri, err := url.Parse(id.SPIFFEID(c.opts.TrustDomain))
	if err != nil {
		return nil, fmt.Errorf("ca: identity %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	now := c.opts.Now()
	notAfter := now.Add(ttl)
	// A leaf never outlives the certificate that signs it.
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		// Empty subject: the identity is the URI SAN alone, which Go then
		// marks critical, as Istio's workload certificates are.
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: signing for %s: %w", uri, err)
	}
	chain := []string{string(pemCert(der))}
	if len(c.chainPEM) > 0 {
		chain = append(chain, string(c.chainPEM)+"\n")
	}
	return append(chain, string(c.rootPEM)), nil
}

// TTL is the lifetime a request for ttl gets: the default for 0, at least
// MinTTL, at most the maximum.
func (c *CA) TTL(ttl time.Duration) time.Duration {
	switch {
	case ttl <= 0:
		return c.opts.DefaultTTL
	case ttl < MinTTL:
		return MinTTL
	case ttl > c.opts.MaxTTL:
		return c.opts.MaxTTL
	}
	return ttl
}

// IdentityMismatchError: a CSR asks for an identity other than the one the
// caller's token proves (e.g. `skein proxy --service-account` differs from
// the pod's). Istio's CA refuses such requests rather than silently
// signing the token's identity.
type IdentityMismatchError struct {
	Requested, Authenticated string
}

func (e *IdentityMismatchError) Error() string {
	return fmt.Sprintf("ca: csr asks for %s, the token is for %s", e.Requested, e.Authenticated)
}

// checkRequestedIdentity refuses a CSR whose URI SANs name another SPIFFE
// identity than id; a CSR naming none gets id.
func (c *CA) checkRequestedIdentity(csr *x509.CertificateRequest, id Identity) error {
	want := id.SPIFFEID(c.opts.TrustDomain)
	for _, u := range csr.URIs {
		if u.String() != want {
			return &IdentityMismatchError{Requested: u.String(), Authenticated: want}
		}
	}
	return nil
}
