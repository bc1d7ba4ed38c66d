package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"
)

// ServingCertificate issues a TLS server certificate for the control
// plane's own endpoints (the injection webhook on 15017), as istiod signs
// its DNS certificate with its CA: the names are DNS SANs, ips IP SANs.
// The chain is [leaf, cert-chain (plug-in CA only)]; clients trust RootPEM
// (the webhook's caBundle).
func (c *CA) ServingCertificate(dnsNames []string, ips []net.IP, ttl time.Duration) (*tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("ca: serving certificate needs at least one DNS name or IP")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := c.opts.Now()
	notAfter := now.Add(c.TTL(ttl))
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn},
		// A little back-dating absorbs clock skew with the API server.
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: serving certificate for %v %v: %w", dnsNames, ips, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	if c.cert != c.root {
		// A plug-in CA: the signing certificate and any intermediates up to
		// the root go along, so clients holding only the root can verify.
		rest := c.chainPEM
		for len(rest) > 0 {
			var block []byte
			block, rest = nextPEMCert(rest)
			if block == nil {
				break
			}
			chain = append(chain, block)
		}
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// nextPEMCert returns the DER of the first CERTIFICATE block in b and what
// follows it (nil when there is none).
func nextPEMCert(b []byte) (der, rest []byte) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, nil
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes, b
		}
	}
}
