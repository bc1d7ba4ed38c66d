package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/skein-mesh/skein/internal/apiclient"
)

// cpscale meets the control plane's authentication as real proxies do:
// every simulated sidecar is a Pod in the registry, holds the workload
// token the config API issued for it (with the admin token discovery wrote
// into its CA directory) and sends it on its ADS stream; the stream runs
// over TLS trusting the mesh root, as `skein up` proxies reach 15012.

// simNamespace and simServiceAccount are where every simulated sidecar
// runs: its node ID, its node metadata, its Pod and its token agree.
const simNamespace, simServiceAccount = "scale", "default"

// xdsServerName is the name a local proxy checks on the control plane's
// serving certificate when it dials an IP (proxy.DefaultXDSServerName).
const xdsServerName = "istiod.istio-system.svc"

// simProxyIdentity is simulated sidecar i's pod name and IP.
func simProxyIdentity(i int) (pod, ip string) {
	return fmt.Sprintf("client-%d", i), fmt.Sprintf("127.20.%d.%d", i/250, i%250+1)
}

// registryDocs are the mesh under test: nsvc Services, each selecting one
// ready Pod, as the local runner stores them.
func registryDocs(nsvc int) []map[string]any {
	docs := []map[string]any{{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": simNamespace}}}
	for i := 0; i < nsvc; i++ {
		name := fmt.Sprintf("svc-%d", i)
		docs = append(docs,
			map[string]any{"apiVersion": "v1", "kind": "Service",
				"metadata": map[string]any{"name": name, "namespace": simNamespace},
				"spec": map[string]any{"selector": map[string]any{"app": name},
					"ports": []any{map[string]any{"name": "http", "port": 8080}}}},
			map[string]any{"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"name": name + "-0", "namespace": simNamespace, "labels": map[string]any{"app": name}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app"}}},
				"status": map[string]any{"phase": "Running", "podIP": fmt.Sprintf("127.10.%d.%d", i/250, i%250+1),
					"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}})
	}
	return docs
}

// simProxyPods registers the n simulated sidecars' Pods (no Service
// selects them), with the service account their node metadata names, so
// the control plane issues them tokens.
func simProxyPods(n int) []map[string]any {
	docs := make([]map[string]any, n)
	for i := range docs {
		pod, ip := simProxyIdentity(i)
		docs[i] = map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": pod, "namespace": simNamespace, "labels": map[string]any{"app": pod}},
			"spec": map[string]any{"serviceAccountName": simServiceAccount,
				"containers": []any{map[string]any{"name": "app", "image": "app"}}},
			"status": map[string]any{"phase": "Running", "podIP": ip,
				"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}}
	}
	return docs
}

// issueTokens fetches the n simulated sidecars' workload tokens, as the
// local runner does for each pod it starts, a few requests at a time.
func issueTokens(ctx context.Context, api *apiclient.Client, adminToken string, n int) ([]string, error) {
	tokens := make([]string, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pod, _ := simProxyIdentity(i)
				resp, err := api.IssueToken(ctx, adminToken, simNamespace, pod)
				if err != nil {
					errs[i] = fmt.Errorf("workload token of pod %s/%s: %w", simNamespace, pod, err)
					continue
				}
				tokens[i] = resp.Token
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

// xdsTarget is how the simulated sidecars reach discovery's xDS port.
type xdsTarget struct {
	addr string
	dial grpc.DialOption // transport credentials
}

// newXDSTarget answers TLS trusting the mesh root in caDir (root-cert.pem)
// and checking istiod's name, as a local proxy dials 15012; or, with
// plaintext, Istio's 15010 (streams still carry tokens).
func newXDSTarget(addr, caDir string, plaintext bool) (xdsTarget, error) {
	if plaintext {
		return xdsTarget{addr: addr, dial: grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	root := filepath.Join(caDir, "root-cert.pem")
	pemBytes, err := os.ReadFile(root)
	if err != nil {
		return xdsTarget{}, fmt.Errorf("mesh root certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return xdsTarget{}, fmt.Errorf("mesh root certificate %s: no PEM certificate", root)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: xdsServerName, MinVersion: tls.VersionTLS12}
	return xdsTarget{addr: addr, dial: grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

// streamContext carries the workload token on an ADS stream, as Envoy
// sends istio-agent's token in the gRPC call's metadata.
func streamContext(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// sendStatus answers why a send failed: gRPC reports a stream the server
// ended (a refused token, say) as io.EOF on Send, and the status on the
// next receive.
func sendStatus(err error, recv func() error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if rerr := recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return err
}
