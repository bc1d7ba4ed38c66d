package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Reference chains: the same two-hop shape as client sidecar → server
// sidecar (HTTP/1.1 keep-alive in, mutual TLS between the hops with
// upstream connection reuse, plaintext to the app), built from nginx and
// HAProxy, each hop a single-worker process.
const (
	nginxFront   = "127.0.9.20:8080"
	nginxBack    = "127.0.9.21:8443"
	haproxyFront = "127.0.9.22:8080"
	haproxyBack  = "127.0.9.23:8443"
	tlsName      = "server.bench"
)

// writeCerts writes a CA and a server and client leaf (ECDSA P-256, as
// Istio's workload certificates can be) into dir: ca.crt, {server,client}.{crt,key,pem}.
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	for i, name := range []string{"server", "client"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name + ".bench"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			DNSNames: []string{tlsName}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kb); err != nil {
			return err
		}
		// HAProxy wants certificate and key in one file.
		pemBoth := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})...)
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), pemBoth, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

const nginxCommon = `daemon off;
master_process on;
worker_processes 1;
%[1]s
pid %[2]s/nginx-%[3]s.pid;
error_log %[2]s/nginx-%[3]s.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/nginx-%[3]s-body;
  proxy_temp_path %[2]s/nginx-%[3]s-proxy;
  fastcgi_temp_path %[2]s/nginx-%[3]s-fcgi;
  uwsgi_temp_path %[2]s/nginx-%[3]s-uwsgi;
  scgi_temp_path %[2]s/nginx-%[3]s-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
%[4]s
}
`

const nginxFrontHTTP = `  upstream hop { server %[1]s; keepalive 64; keepalive_requests 1000000; }
  server {
    listen %[2]s;
    location / {
      proxy_pass https://hop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate %[3]s/client.crt;
      proxy_ssl_certificate_key %[3]s/client.key;
      proxy_ssl_trusted_certificate %[3]s/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name ` + tlsName + `;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }`

const nginxBackHTTP = `  upstream app { server %[1]s; keepalive 64; keepalive_requests 1000000; }
  server {
    listen %[2]s ssl;
    ssl_certificate %[3]s/server.crt;
    ssl_certificate_key %[3]s/server.key;
    ssl_client_certificate %[3]s/ca.crt;
    ssl_verify_client on;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`

const haproxyFrontCfg = `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend front
  bind %[1]s
  default_backend hop
backend hop
  server back %[2]s ssl crt %[3]s/client.pem ca-file %[3]s/ca.crt verify required verifyhost ` + tlsName + ` sni str(` + tlsName + `) pool-max-conn 64
`

const haproxyBackCfg = `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend back
  bind %[1]s ssl crt %[3]s/server.pem ca-file %[3]s/ca.crt verify required
  default_backend app
backend app
  server app %[2]s pool-max-conn 64
`

// chainProc is one started reference proxy.
type chainProc struct {
	name string
	cmd  *exec.Cmd
}

func (c *chainProc) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// startChain writes the configs of a two-hop chain and starts both hops
// pinned to cpu. kind is "nginx" or "haproxy"; app is the upstream app.
func startChain(kind, dir, app string, cpu int) ([]*chainProc, error) {
	bin, err := exec.LookPath(kind)
	if err != nil {
		for _, p := range []string{"/usr/sbin/" + kind, "/sbin/" + kind} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s not installed (run `make bench-setup`)", kind)
		}
	}
	type hop struct{ name, cfg string }
	var hops []hop
	switch kind {
	case "nginx":
		user := ""
		if os.Geteuid() == 0 {
			user = "user root root;" // the workers read nothing else; keeps temp dirs writable
		}
		hops = []hop{
			{"back", fmt.Sprintf(nginxCommon, user, dir, "back", fmt.Sprintf(nginxBackHTTP, app, nginxBack, dir))},
			{"front", fmt.Sprintf(nginxCommon, user, dir, "front", fmt.Sprintf(nginxFrontHTTP, nginxBack, nginxFront, dir))},
		}
	case "haproxy":
		hops = []hop{
			{"back", fmt.Sprintf(haproxyBackCfg, haproxyBack, app, dir)},
			{"front", fmt.Sprintf(haproxyFrontCfg, haproxyFront, haproxyBack, dir)},
		}
	}
	var procs []*chainProc
	for _, h := range hops {
		cfg := filepath.Join(dir, kind+"-"+h.name+".conf")
		if err := os.WriteFile(cfg, []byte(h.cfg), 0o644); err != nil {
			return procs, err
		}
		var argv []string
		if kind == "nginx" {
			argv = pinned(cpu, bin, "-p", dir, "-c", cfg)
		} else {
			argv = pinned(cpu, bin, "-db", "-f", cfg)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		logf, _ := os.Create(filepath.Join(dir, kind+"-"+h.name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return procs, fmt.Errorf("start %s %s: %w", kind, h.name, err)
		}
		procs = append(procs, &chainProc{name: kind + " " + h.name, cmd: cmd})
	}
	for _, addr := range []string{map[string]string{"nginx": nginxFront, "haproxy": haproxyFront}[kind],
		map[string]string{"nginx": nginxBack, "haproxy": haproxyBack}[kind]} {
		if err := waitListening(addr, 10*time.Second); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, kind+"-front.log"))
			b2, _ := os.ReadFile(filepath.Join(dir, kind+"-back.log"))
			return procs, fmt.Errorf("%s: %v\n%s\n%s", kind, err, b, b2)
		}
	}
	return procs, nil
}

func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s", addr, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
