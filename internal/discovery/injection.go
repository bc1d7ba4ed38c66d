package discovery

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/ca"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/inject"
)

// InjectionOptions configure Istio's sidecar injector webhook (HTTPS
// /inject, istiod's port 15017).
type InjectionOptions struct {
	// Addr is the HTTPS listen address, e.g. 0.0.0.0:15017; empty: no
	// webhook (local mode injects in the runner).
	Addr string
	// Params are what injected proxies are told (discovery address, image...).
	Params inject.Params
	// Hosts are extra DNS names or IPs for the serving certificate, e.g.
	// the host in the MutatingWebhookConfiguration's url.
	Hosts []string
	// CertTTL is the serving certificate's lifetime (default 30 days,
	// clamped by the CA's maximum); it is renewed at half-life.
	CertTTL time.Duration
}

// InjectionAddr reports the webhook's bound address ("" when off).
func (s *Server) InjectionAddr() string {
	if s.injectLis == nil {
		return ""
	}
	return s.injectLis.Addr().String()
}

// listenInjection binds the webhook's listener.
func (s *Server) listenInjection() error {
	o := &s.opts.Injection
	if o.Addr == "" {
		return nil
	}
	if o.Params.TrustDomain == "" {
		o.Params.TrustDomain = s.identity.ca.TrustDomain()
	}
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("injection webhook listener: %w", err)
	}
	dns, ips := servingNames(s.opts.RootNamespace, s.opts.Domain, lis.Addr(), o.Hosts)
	s.injectCert = &servingCert{ca: s.identity.ca, dns: dns, ips: ips, ttl: o.CertTTL}
	if _, err := s.injectCert.get(); err != nil {
		lis.Close()
		return err
	}
	s.injectLis = lis
	return nil
}

// injectionServer serves /inject over TLS on the webhook listener (nil
// when the webhook is off).
func (s *Server) injectionServer() *http.Server {
	if s.injectLis == nil {
		return nil
	}
	wh := &inject.Webhook{Params: s.opts.Injection.Params, Namespaces: s.namespaceLabels, Config: s.injectorConfig(), Log: s.log}
	mux := http.NewServeMux()
	mux.Handle("/inject", wh)
	mux.Handle("/inject/", wh) // Istio's revisioned paths (/inject/rev/default/...)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.injectCert.get() },
		},
	}
}

// injectorConfig reads Istio's istio-sidecar-injector ConfigMap from the
// config store (the Kubernetes mirror keeps it there), compiling it once
// per version of the ConfigMap.
func (s *Server) injectorConfig() func() (*inject.Config, error) {
	var (
		mu   sync.Mutex
		seen *config.Object
		cfg  *inject.Config
		err  error
	)
	return func() (*inject.Config, error) {
		obj, _ := s.store.Snapshot().Get(config.Key{Kind: "ConfigMap", Namespace: s.opts.RootNamespace, Name: inject.InjectorConfigMap})
		mu.Lock()
		defer mu.Unlock()
		if obj != seen {
			seen, cfg, err = obj, nil, nil
			if obj != nil {
				if cm, ok := obj.Spec.(*corev1.ConfigMap); ok {
					cfg, err = inject.ParseConfigMap(cm.Data)
				}
			}
		}
		return cfg, err
	}
}

// namespaceLabels looks a namespace's labels up in the config store (in
// Kubernetes mode the mirror keeps Namespaces there).
func (s *Server) namespaceLabels(namespace string) map[string]string {
	obj, ok := s.store.Snapshot().Get(config.Key{Kind: "Namespace", Name: namespace})
	if !ok {
		return nil
	}
	if ns, ok := obj.Spec.(*corev1.Namespace); ok && len(ns.Labels) > 0 {
		return ns.Labels
	}
	return obj.Meta.Labels
}

// servingNames are the webhook certificate's SANs: istiod's Service names
// (what the in-cluster webhook configuration dials), the listen IP (every
// local address when it is unspecified) and the extra hosts.
func servingNames(namespace, domain string, addr net.Addr, hosts []string) ([]string, []net.IP) {
	dns := []string{"istiod", "istiod." + namespace, "istiod." + namespace + ".svc", "istiod." + namespace + ".svc." + domain}
	var ips []net.IP
	if tcp, ok := addr.(*net.TCPAddr); ok {
		if tcp.IP.IsUnspecified() {
			ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
						ips = append(ips, n.IP)
					}
				}
			}
		} else {
			ips = append(ips, tcp.IP)
		}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// servingCert holds the webhook's certificate and renews it at half-life.
type servingCert struct {
	ca  *ca.CA
	dns []string
	ips []net.IP
	ttl time.Duration

	mu   sync.Mutex
	cert *tls.Certificate
}

func (c *servingCert) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil {
		l := c.cert.Leaf
		if time.Now().Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) / 2)) {
			return c.cert, nil
		}
	}
	ttl := c.ttl
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	cert, err := c.ca.ServingCertificate(c.dns, c.ips, ttl)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // keep serving the old one until it expires
		}
		return nil, err
	}
	c.cert = cert
	return cert, nil
}

// serveInjection starts the webhook (errors go to errc) and returns what
// stops it.
func (s *Server) serveInjection(errc chan<- error) (stop func(context.Context)) {
	hs := s.injectionServer()
	if hs == nil {
		return func(context.Context) {}
	}
	go func() { errc <- hs.ServeTLS(s.injectLis, "", "") }()
	s.log.Info("injection webhook serving", "addr", s.InjectionAddr(), "path", "/inject")
	return func(ctx context.Context) { _ = hs.Shutdown(ctx) }
}
