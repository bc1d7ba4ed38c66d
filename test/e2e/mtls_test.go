package e2e

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
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	strictPeerAuthn = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: bookinfo
spec:
  mtls:
    mode: STRICT
`
	permissivePeerAuthn = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: bookinfo
spec:
  mtls:
    mode: PERMISSIVE
`
)

// plaintextGet sends a plain HTTP/1.1 GET to addr from outside the mesh and
// returns the status line, or an error when the connection is refused,
// closed or reset without an HTTP response.
func plaintextGet(addr, path string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: productpage:9080\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if len(b) == 0 {
		if err == nil {
			err = io.EOF
		}
		return "", fmt.Errorf("no HTTP response: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\r\n")
	return line, nil
}

// TestMutualTLS applies the tutorial's STRICT PeerAuthentication: Bookinfo
// keeps working over mTLS between sidecars, a plaintext client outside the
// mesh is refused, PERMISSIVE admits it again, and moving PERMISSIVE →
// STRICT under load loses no request.
func TestMutualTLS(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	pp := net.JoinHostPort(podIP(t, m, "productpage"), "9080")

	// Default (no policy) is PERMISSIVE: plaintext from outside works.
	eventually(t, 10*time.Second, "plaintext GET to productpage (PERMISSIVE by default)", func() error {
		line, err := plaintextGet(pp, "/productpage")
		if err != nil {
			return err
		}
		if !strings.Contains(line, " 200 ") {
			return errors.New(line)
		}
		return nil
	})

	m.apply(t, strictPeerAuthn)
	eventually(t, 15*time.Second, "plaintext refused under STRICT", func() error {
		if line, err := plaintextGet(pp, "/productpage"); err == nil {
			return fmt.Errorf("plaintext client got %q", line)
		}
		return nil
	})
	for range 5 {
		code, body, err := get(m.ingress+"/productpage", nil)
		if err != nil || code != http.StatusOK || strings.Contains(body, "-error") || !strings.Contains(body, "Book Details") {
			t.Fatalf("bookinfo through the ingress under STRICT: %d %v %.300s", code, err, body)
		}
	}
	// Reviews v2/v3 call ratings: stars appear only if productpage →
	// reviews → ratings all work over mTLS.
	eventually(t, 15*time.Second, "stars under STRICT", func() error {
		if s := m.stars(t, ""); s == "none" || s == "reviews-error" {
			return fmt.Errorf("stars = %s", s)
		}
		return nil
	})

	m.apply(t, permissivePeerAuthn)
	eventually(t, 15*time.Second, "plaintext admitted under PERMISSIVE", func() error {
		line, err := plaintextGet(pp, "/productpage")
		if err != nil {
			return err
		}
		if !strings.Contains(line, " 200 ") {
			return errors.New(line)
		}
		return nil
	})

	// Migration PERMISSIVE → STRICT under continuous load.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(m.ingress + "/productpage")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "-error") {
						err = fmt.Errorf("status %d, error element: %v", resp.StatusCode, strings.Contains(string(body), "-error"))
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	m.apply(t, strictPeerAuthn)
	time.Sleep(7 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("migration PERMISSIVE → STRICT under load: %d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during the migration; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 20 {
		t.Errorf("only %d requests succeeded during the migration", ok.Load())
	}
	if line, err := plaintextGet(pp, "/productpage"); err == nil {
		t.Errorf("after the migration a plaintext client got %q", line)
	}

	t.Run("gateway SIMPLE TLS and httpsRedirect", func(t *testing.T) { gatewayTLS(t, m) })
}

// gatewayTLS serves https on the ingress :8443 (Gateway port 443) with a
// generated certificate from files, and redirects http to https.
func gatewayTLS(t *testing.T, m *mesh) {
	dir := t.TempDir()
	caPool, certFile, keyFile := writeServerCert(t, dir, "bookinfo.example.com")
	m.apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
  namespace: bookinfo
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls:
      httpsRedirect: true
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls:
      mode: SIMPLE
      serverCertificate: %s
      privateKey: %s
`, certFile, keyFile))
	host := strings.TrimSuffix(strings.TrimPrefix(m.ingress, "http://"), ":8080")
	httpsURL := "https://" + net.JoinHostPort(host, "8443") + "/productpage"
	client := &http.Client{Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool, ServerName: "bookinfo.example.com"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	eventually(t, 15*time.Second, "https on the ingress :8443", func() error {
		resp, err := client.Get(httpsURL)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Book Details") || resp.TLS == nil {
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
		}
		return nil
	})
	start := time.Now()
	resp, err := client.Get(m.ingress + "/productpage")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc, "https://") {
		t.Errorf("http GET: %d Location %q, want 301 to https", resp.StatusCode, loc)
	}
	t.Logf("https via the gateway works; http answers %d → %s (%v)", resp.StatusCode, loc, time.Since(start))
}

// writeServerCert writes a server certificate for name, signed by a new
// CA, and its key to dir; the client verifies it through the SNI name.
func writeServerCert(t *testing.T, dir, name string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}
