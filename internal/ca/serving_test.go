package ca

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// TestServingCertificateVerifiesWithRootOnly checks what the API server
// does with the webhook's caBundle: the served chain must verify against
// the root alone, for the self-signed and the plug-in CA.
func TestServingCertificateVerifiesWithRootOnly(t *testing.T) {
	self, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := t.TempDir()
	writePluginCA(t, pluginDir)
	plugin, err := New(Options{PluginDir: pluginDir})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*CA{"self-signed": self, "plug-in": plugin} {
		t.Run(name, func(t *testing.T) {
			cert, err := c.ServingCertificate([]string{"istiod.istio-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(c.RootPEM())
			inters := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				ic, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(ic)
			}
			for _, host := range []string{"istiod.istio-system.svc", "127.0.0.1"} {
				if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inters}); err != nil {
					t.Errorf("%s: %v", host, err)
				}
			}
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots, Intermediates: inters}); err == nil {
				t.Error("verified for a name it does not carry")
			}
		})
	}
	if _, err := self.ServingCertificate(nil, nil, time.Hour); err == nil {
		t.Error("certificate without names issued")
	}
}
