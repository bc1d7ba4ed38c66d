package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// DefaultXDSServerName is the name the proxy verifies on the control
// plane's certificate when its address is an IP: istiod's Service name,
// which the mesh CA puts in the serving certificate.
const DefaultXDSServerName = "istiod.istio-system.svc"

// controlPlaneDial answers the gRPC dial options for xDS and the CA: TLS
// trusting the mesh root in rootFile (istio-agent's root-cert.pem), or nil
// (plaintext, Istio's 15010) without one.
func controlPlaneDial(addr, rootFile string) ([]grpc.DialOption, error) {
	if rootFile == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, fmt.Errorf("control plane root certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("control plane root certificate %s: no PEM certificate", rootFile)
	}
	name := DefaultXDSServerName
	if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && net.ParseIP(host) == nil && host != "localhost" {
		name = host // a DNS name the certificate carries (istiod.<ns>.svc, --xds-host)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}
