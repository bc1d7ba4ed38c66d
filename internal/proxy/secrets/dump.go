package secrets

import (
	"encoding/pem"
	"strconv"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ConfigDump describes the secrets as Envoy's /config_dump does for SDS:
// "default" (certificate chain; the private key redacted as Envoy redacts
// it) and "ROOTCA" (the trust bundle). Empty before the first certificate.
func (m *Manager) ConfigDump() *adminv3.SecretsConfigDump {
	d := &adminv3.SecretsConfigDump{}
	b := m.current.Load()
	if b == nil {
		return d
	}
	var chain []byte
	for _, c := range b.chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.root.Raw})
	version := strconv.FormatInt(m.rotations.Load(), 10)
	updated := timestamppb.New(b.received)
	add := func(s *tlsv3.Secret) {
		a, err := anypb.New(s)
		if err != nil {
			panic(err) // a Secret always marshals
		}
		d.DynamicActiveSecrets = append(d.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{
			Name: s.Name, VersionInfo: version, LastUpdated: updated, Secret: a,
		})
	}
	add(&tlsv3.Secret{Name: WorkloadSecretName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}},
	}}})
	add(&tlsv3.Secret{Name: RootSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: root}},
	}}})
	return d
}
