package kubetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's credentials, as files in one directory. One CA signs
// the serving certificate and every client certificate: a test cluster has
// no need for kubeadm's separate front-proxy and etcd CAs.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
}

// Files of the pki directory.
const (
	caCertFile      = "ca.crt"
	caKeyFile       = "ca.key"
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	saPublicFile    = "sa.pub"
	saPrivateFile   = "sa.key"
)

// identity is a client certificate subject: CN is the user, O its groups.
type identity struct {
	file   string // base name of the .crt/.key pair
	user   string
	groups []string
}

// The components' users are the ones Kubernetes' RBAC bootstrap policy
// grants roles to, so they run with kubeadm's permissions, not as admins.
var (
	adminIdentity     = identity{"admin", "kubetest-admin", []string{"system:masters"}}
	controllerManager = identity{"controller-manager", "system:kube-controller-manager", nil}
	scheduler         = identity{"scheduler", "system:kube-scheduler", nil}
)

// newPKI writes a CA, the API server's serving pair (for the given IPs and
// DNS names), the service-account signing pair and client pairs for ids.
func newPKI(dir string, servingIPs []net.IP, servingDNS []string, ids ...identity) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caCert: caCert, caKey: caKey}
	if err := p.writePair(caCertFile, caKeyFile, der, caKey); err != nil {
		return nil, err
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: servingIPs,
		DNSNames:    servingDNS,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := p.issue(serving, servingCertFile, servingKeyFile); err != nil {
		return nil, err
	}
	for _, id := range ids {
		client := &x509.Certificate{
			Subject:     pkix.Name{CommonName: id.user, Organization: id.groups},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := p.issue(client, id.file+".crt", id.file+".key"); err != nil {
			return nil, err
		}
	}

	// The service-account key signs TokenRequest tokens (ES256); the API
	// server verifies them with the public half in TokenReview.
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(p.path(saPrivateFile), saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.path(saPublicFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// issue signs tmpl with the CA, for a fresh key, and writes the pair.
func (p *pki) issue(tmpl *x509.Certificate, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = p.caCert.NotBefore
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return fmt.Errorf("signing %s: %w", certFile, err)
	}
	return p.writePair(certFile, keyFile, der, key)
}

func (p *pki) writePair(certFile, keyFile string, der []byte, key crypto.Signer) error {
	if err := os.WriteFile(p.path(certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return writeKey(p.path(keyFile), key)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// kubeconfig renders a kubeconfig for server with the client pair of id,
// embedding the data so the file stands alone.
func (p *pki) kubeconfig(server string, id identity) ([]byte, error) {
	ca, err := os.ReadFile(p.path(caCertFile))
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(p.path(id.file + ".crt"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(p.path(id.file + ".key"))
	if err != nil {
		return nil, err
	}
	// JSON is YAML; []byte fields marshal as the base64 kubeconfig wants.
	type obj = map[string]any
	return json.MarshalIndent(obj{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []obj{{"name": "kubetest", "cluster": obj{"server": server, "certificate-authority-data": ca}}},
		"users":           []obj{{"name": id.user, "user": obj{"client-certificate-data": cert, "client-key-data": key}}},
		"contexts":        []obj{{"name": "kubetest", "context": obj{"cluster": "kubetest", "user": id.user, "namespace": "default"}}},
		"current-context": "kubetest",
	}, "", "  ")
}
