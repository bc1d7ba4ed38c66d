package proxy

import (
	"context"
	"log/slog"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/grpc"

	"github.com/skein-mesh/skein/internal/proxy/admin"
	"github.com/skein-mesh/skein/internal/proxy/secrets"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// IdentityOptions configure the workload certificate (istio-agent's
// CA_ADDR, the service account token and SECRET_TTL).
type IdentityOptions struct {
	// CAAddress is the CA's gRPC host:port (default: the discovery
	// address, as istiod serves both).
	CAAddress string
	// TokenFile holds the workload token sent with certificate requests.
	TokenFile   string
	TrustDomain string        // default cluster.local
	CertTTL     time.Duration // requested lifetime; 0: the CA's default
}

func (o IdentityOptions) enabled() bool { return o.CAAddress != "" || o.TokenFile != "" }

// manager builds the secret manager, or nil when identity is not configured.
func (o IdentityOptions) manager(opts Options, dial []grpc.DialOption, st *stats.Store, log *slog.Logger) (*secrets.Manager, error) {
	if !o.enabled() {
		return nil, nil
	}
	addr := o.CAAddress
	if addr == "" {
		addr = opts.DiscoveryAddress
	}
	sa := opts.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	return secrets.New(secrets.Options{
		CAAddress: addr, TokenFile: o.TokenFile, TrustDomain: o.TrustDomain,
		Namespace: opts.Namespace, ServiceAccount: sa, CertTTL: o.CertTTL,
		Stats: st, Logger: log, DialOptions: dial,
	})
}

// startSecrets fetches the first certificate in the background (retrying
// until ctx ends); the proxy is not ready before it has one, as Envoy
// warms listeners until their SDS secrets arrive.
func (p *Proxy) startSecrets(ctx context.Context) {
	if p.secrets == nil {
		return
	}
	go func() {
		if err := p.secrets.Start(ctx); err != nil {
			p.log.Error("no workload certificate", "error", err)
		}
	}()
}

func (p *Proxy) identityReady() bool {
	if p.secrets == nil {
		return true
	}
	_, err := p.secrets.Certificate()
	return err == nil
}

// Secrets is the proxy's secret manager (nil without an identity).
func (p *Proxy) Secrets() *secrets.Manager { return p.secrets }

// SecretsDump is the SDS part of /config_dump (admin.SecretsSource); nil
// without an identity.
func (p *Proxy) SecretsDump() *adminv3.SecretsConfigDump {
	if p.secrets == nil {
		return nil
	}
	return p.secrets.ConfigDump()
}

var _ admin.SecretsSource = (*Proxy)(nil)
