package discovery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1 "istio.io/api/security/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/ca"
	"github.com/skein-mesh/skein/internal/config"
)

// tlsDial trusts the mesh root and checks istiod's name, as proxies do.
func tlsDial(srv *Server) grpc.DialOption {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CA().RootPEM())
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.istio-system.svc"}))
}

// startServer runs a control plane with a durable store (so the CA has a
// directory) and answers it with an admin API client.
func startServer(t *testing.T, opts Options) (*Server, *apiclient.Client) {
	t.Helper()
	opts.StoreDir = filepath.Join(t.TempDir(), "store")
	opts.GRPCAddr, opts.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := New(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, apiclient.NewWithToken(srv.HTTPAddr(), srv.AdminToken())
}

// addPod registers a pod and answers its workload token, as the runner does.
func addPod(t *testing.T, srv *Server, api *apiclient.Client, ns, name, sa string) string {
	t.Helper()
	pod := &corev1.Pod{Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	pod.Name, pod.Namespace = name, ns
	if _, err := api.Apply(context.Background(), []*config.Object{{
		GVK: config.GVK{Version: "v1", Kind: "Pod"}, Meta: config.Meta{Name: name, Namespace: ns}, Spec: pod,
	}}); err != nil {
		t.Fatal(err)
	}
	tok, err := api.IssueToken(context.Background(), srv.AdminToken(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func node(typ, ip, pod, ns, sa string) *corev3.Node {
	md := map[string]any{"NAMESPACE": ns}
	if sa != "" {
		md["SERVICE_ACCOUNT"] = sa
	}
	s, _ := structpb.NewStruct(md)
	return &corev3.Node{Id: fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", typ, ip, pod, ns, ns), Metadata: s}
}

// adsStream opens an ADS stream with token ("" for none), asks for
// clusters and listeners, and answers the first response or the error.
type adsResult struct {
	resp *discoveryv3.DiscoveryResponse
	err  error
}

func openADS(t *testing.T, ctx context.Context, srv *Server, dial grpc.DialOption, token string, n *corev3.Node, typ string) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, adsResult) {
	t.Helper()
	conn, err := grpc.NewClient(srv.GRPCAddr(), dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, adsResult{err: err}
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: typ}); err != nil {
		_, err = stream.Recv()
		return stream, adsResult{err: err}
	}
	resp, err := stream.Recv()
	return stream, adsResult{resp: resp, err: err}
}

// TestXDSAuthentication: each acceptance line of issue 13's xDS part, on
// the TLS port with real streams.
func TestXDSAuthentication(t *testing.T) {
	srv, api := startServer(t, Options{})
	productpage := addPod(t, srv, api, "bookinfo", "productpage-v1-a", "bookinfo-productpage")
	reviews := addPod(t, srv, api, "bookinfo", "reviews-v1-b", "bookinfo-reviews")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := tlsDial(srv)
	real := node("sidecar", "127.0.0.5", "productpage-v1-a", "bookinfo", "bookinfo-productpage")

	// Plaintext to the TLS port: no resources.
	if _, r := openADS(t, ctx, srv, grpc.WithTransportCredentials(insecure.NewCredentials()), productpage, real, resourcev3.ClusterType); r.err == nil {
		t.Errorf("plaintext stream to the TLS port got %v", r.resp)
	}
	for _, c := range []struct {
		name  string
		token string
		node  *corev3.Node
		want  codes.Code
	}{
		{"no token", "", real, codes.Unauthenticated},
		{"forged token", "skein1.e30.AAAA", real, codes.Unauthenticated},
		{"productpage's token, another pod's node ID", productpage, node("sidecar", "127.0.0.6", "reviews-v1-b", "bookinfo", "bookinfo-reviews"), codes.PermissionDenied},
		{"productpage's token, another service account", productpage, node("sidecar", "127.0.0.5", "productpage-v1-a", "bookinfo", "bookinfo-reviews"), codes.PermissionDenied},
		{"productpage's token, the gateway's namespace", productpage, node("router", "127.0.0.7", "productpage-v1-a", "istio-system", ""), codes.PermissionDenied},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, r := openADS(t, ctx, srv, dial, c.token, c.node, resourcev3.ClusterType)
			if status.Code(r.err) != c.want || r.resp != nil {
				t.Fatalf("got %v %v, want %v and no resources", r.resp, r.err, c.want)
			}
		})
	}

	// The real proxy connects and gets its clusters.
	realStream, r := openADS(t, ctx, srv, dial, productpage, real, resourcev3.ClusterType)
	if r.err != nil || r.resp == nil {
		t.Fatalf("the real proxy: %v", r.err)
	}
	// Another identity reusing its node ID is refused (reviews' valid
	// token, but naming productpage's pod fails binding already; a second
	// identity that passes binding would need productpage's token).
	if _, r := openADS(t, ctx, srv, dial, reviews, real, resourcev3.ClusterType); status.Code(r.err) != codes.PermissionDenied {
		t.Fatalf("impostor stream: %v, want PermissionDenied", r.err)
	}
	// The real stream still receives pushes: ACK, then a config change.
	if err := realStream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: r.resp.VersionInfo, ResponseNonce: r.resp.Nonce}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
	if _, err := api.Apply(ctx, []*config.Object{{GVK: config.GVK{Version: "v1", Kind: "Service"}, Meta: config.Meta{Name: "x", Namespace: "bookinfo"}, Spec: svc}}); err != nil {
		t.Fatal(err)
	}
	next, err := realStream.Recv()
	if err != nil || next.VersionInfo == r.resp.VersionInfo {
		t.Fatalf("the real proxy's stream after the impostor: %v %v", next, err)
	}
	if got := srv.xds.Status(); len(got) != 1 || got[0].ID != real.Id {
		t.Errorf("connected proxies: %+v", got)
	}
}

// TestGatewaySecretOnlyToGateway: the credentialName key goes to the
// gateway's identity over TLS, never to another identity, and never over
// a plaintext port.
func TestGatewaySecretOnlyToGateway(t *testing.T) {
	for _, plaintext := range []bool{false, true} {
		t.Run(fmt.Sprintf("plaintext=%v", plaintext), func(t *testing.T) {
			srv, api := startServer(t, Options{PlaintextXDS: plaintext})
			gw := addPod(t, srv, api, "istio-system", "istio-ingressgateway-a", "istio-ingressgateway-service-account")
			productpage := addPod(t, srv, api, "bookinfo", "productpage-v1-a", "bookinfo-productpage")
			docs, _, err := config.LoadFiles([]string{"testdata/gateway-credential.yaml"}, "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := api.Apply(ctx, docs); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the debounced push
			dial := tlsDial(srv)
			if plaintext {
				dial = grpc.WithTransportCredentials(insecure.NewCredentials())
			}
			gwNode := node("router", "127.0.0.8", "istio-ingressgateway-a", "istio-system", "")
			gwNode.Metadata.Fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"istio": structpb.NewStringValue("ingressgateway")}})
			// The impostor: productpage's token, the gateway's node.
			if _, r := openADS(t, ctx, srv, dial, productpage, gwNode, resourcev3.ListenerType); r.err == nil {
				t.Fatalf("impostor gateway got listeners")
			}
			_, r := openADS(t, ctx, srv, dial, gw, gwNode, resourcev3.ListenerType)
			if r.err != nil {
				t.Fatal(r.err)
			}
			got := ""
			for _, a := range r.resp.Resources {
				got += string(a.Value)
			}
			hasKey := strings.Contains(got, "BEGIN EC PRIVATE KEY") || strings.Contains(got, "BEGIN PRIVATE KEY")
			if hasKey == plaintext {
				t.Errorf("gateway listeners carry the key: %v, want %v", hasKey, !plaintext)
			}
		})
	}
}

// TestCARefusesOtherServiceAccount: a token presented for another service
// account than the CSR asks for is refused; the CSR's own identity is used.
func TestCARefusesOtherServiceAccount(t *testing.T) {
	srv, api := startServer(t, Options{})
	productpage := addPod(t, srv, api, "bookinfo", "productpage-v1-a", "bookinfo-productpage")
	conn, err := grpc.NewClient(srv.GRPCAddr(), tlsDial(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+productpage)
	for _, c := range []struct {
		sa   string
		want codes.Code
	}{{"bookinfo-reviews", codes.PermissionDenied}, {"bookinfo-productpage", codes.OK}} {
		_, err := createCertificate(ctx, conn, srv.CA().TrustDomain(), ca.Identity{Namespace: "bookinfo", ServiceAccount: c.sa})
		if status.Code(err) != c.want {
			t.Errorf("CSR for %s with productpage's token: %v, want %v", c.sa, err, c.want)
		}
	}
}

// createCertificate sends a CSR asking for id, as a proxy started with
// --service-account does.
func createCertificate(ctx context.Context, conn *grpc.ClientConn, trustDomain string, id ca.Identity) (*securityv1.IstioCertificateResponse, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id.SPIFFEID(trustDomain))
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return nil, err
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	return securityv1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1.IstioCertificateRequest{Csr: string(csr)})
}
