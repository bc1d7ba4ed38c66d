package discovery

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/xdsserver"
)

// xDS and the CA share the gRPC port, as on istiod's 15012: TLS with a
// serving certificate from the mesh CA (istiod's Service names and the
// listen IPs), every ADS stream and certificate request authenticated by
// the workload's token. Options.PlaintextXDS serves the port without TLS
// (Istio's 15010); streams still need a token, and the gateways' key
// material (credentialName) is then never sent.

// xdsCredentials answers the gRPC server's transport credentials.
func (s *Server) xdsCredentials() (grpc.ServerOption, error) {
	if s.opts.PlaintextXDS {
		return nil, nil
	}
	dns, ips := servingNames(s.opts.RootNamespace, s.opts.Domain, s.grpcLis.Addr(), s.opts.XDSHosts)
	dns = append(dns, "localhost")
	cert := &servingCert{ca: s.identity.ca, dns: dns, ips: ips}
	if _, err := cert.get(); err != nil {
		return nil, fmt.Errorf("xDS serving certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get() },
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// streamAuthenticator authenticates ADS streams with the CA's
// authenticator: the local runner's workload tokens, or service-account
// tokens by TokenReview in Kubernetes mode.
func (s *Server) streamAuthenticator() xdsserver.Authenticator {
	return xdsserver.AuthenticatorFunc(func(ctx context.Context) (xdsserver.Peer, error) {
		id, err := s.identity.auth.Authenticate(ctx)
		if err != nil {
			return xdsserver.Peer{}, err
		}
		return xdsserver.Peer{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount, Pod: id.Pod}, nil
	})
}

// withoutSecrets hides Secrets from translation: on a plaintext xDS port
// a gateway's credentialName key would cross the network in clear, so it
// is never generated (the gateway reports the Secret as not found).
type withoutSecrets struct{ config.Reader }

func (w withoutSecrets) List(kind string) []*config.Object {
	if kind == "Secret" {
		return nil
	}
	return w.Reader.List(kind)
}

func (w withoutSecrets) Get(key config.Key) (*config.Object, bool) {
	if key.Kind == "Secret" {
		return nil, false
	}
	return w.Reader.Get(key)
}

// translationConfig is the config translation reads for a push.
func (s *Server) translationConfig(snap config.Reader) config.Reader {
	if s.opts.PlaintextXDS {
		return withoutSecrets{snap}
	}
	return snap
}
