package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// protocolsServeArg makes the test binary, re-executed by the local runner
// as a pod's container, one of this test's applications.
const protocolsServeArg = "protocols-serve"

func init() {
	// init runs before the testing package parses flags.
	if len(os.Args) > 2 && os.Args[1] == protocolsServeArg {
		os.Exit(serveProtocols(os.Args[2], os.Args[3:]))
	}
}

// serveProtocols runs one application: "grpc" (grpc-go's interop
// TestService), "tcp-echo" (answers each line with "<pod>: <line>") or
// "grpc-client" (an HTTP endpoint that runs gRPC calls to --target through
// the pod's sidecar and reports what arrived).
func serveProtocols(mode string, args []string) int {
	fs := flag.NewFlagSet(protocolsServeArg, flag.ContinueOnError)
	addr := fs.String("addr", "", "listen address")
	target := fs.String("target", "", "gRPC target (grpc-client)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	switch mode {
	case "grpc":
		srv := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(srv, echoService{})
		go func() { <-ctx.Done(); srv.Stop() }()
		srv.Serve(ln)
	case "tcp-echo":
		pod := os.Getenv("POD_NAME")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 0
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s: %s\n", pod, sc.Text())
				}
			}()
		}
	case "tls-echo":
		// A TLS service of its own (the mesh wraps it in mTLS between the
		// sidecars): tells each client who answered and the SNI it sent.
		cert, err := selfSignedCert()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pod := os.Getenv("POD_NAME")
		tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		for {
			c, err := tl.Accept()
			if err != nil {
				return 0
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() == nil {
					fmt.Fprintf(c, "%s sni=%s\n", pod, tc.ConnectionState().ServerName)
				}
			}()
		}
	case "grpc-client":
		// grpc-go takes its proxy from HTTPS_PROXY (it asks for an https
		// URL); the runner sets HTTP_PROXY, the same sidecar.
		os.Setenv("HTTPS_PROXY", os.Getenv("HTTP_PROXY"))
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			report, err := grpcChecks(r.Context(), *target)
			if err != nil {
				http.Error(w, report+"FAIL: "+err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, report)
		})}
		srv.Serve(ln)
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		return 2
	}
	return 0
}

// selfSignedCert makes the tls-echo server's certificate.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"*.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// echoService echoes payloads, answers a requested status instead when
// asked (as the interop tests' status_code_and_message case does) and
// always sets a trailer, so trailers are seen to cross the mesh.
type echoService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", "unary"))
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (echoService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	stream.SetTrailer(metadata.Pairs("x-echo-trailer", "stream"))
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func (echoService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpcChecks calls target with a plain grpc.NewClient (the proxy from the
// environment, as any gRPC app in a pod) and checks unary, server
// streaming, bidirectional streaming, trailers and error statuses.
func grpcChecks(ctx context.Context, target string) (string, error) {
	var report strings.Builder
	cc, err := grpc.NewClient("dns:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	var trailer metadata.MD
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Trailer(&trailer))
	if err != nil {
		return report.String(), fmt.Errorf("unary: %v", err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" || trailer.Get("x-echo-trailer")[0] != "unary" {
		return report.String(), fmt.Errorf("unary: payload %q, trailer %v", resp.GetPayload().GetBody(), trailer)
	}
	report.WriteString("unary ok\n")

	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.PermissionDenied), Message: "denied by test"}}, grpc.Trailer(&trailer))
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "denied by test" || len(trailer.Get("x-echo-trailer")) == 0 {
		return report.String(), fmt.Errorf("unary error: got %v (trailer %v), want PermissionDenied \"denied by test\"", err, trailer)
	}
	report.WriteString("unary error status ok\n")

	stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 20}, {Size: 300}},
		ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "end of stream by test"},
	})
	if err != nil {
		return report.String(), fmt.Errorf("server streaming: %v", err)
	}
	var sizes []int
	for {
		m, err := stream.Recv()
		if err != nil {
			if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "end of stream by test" {
				return report.String(), fmt.Errorf("server streaming: ended with %v, want NotFound", err)
			}
			break
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[1 20 300]" || stream.Trailer().Get("x-echo-trailer")[0] != "stream" {
		return report.String(), fmt.Errorf("server streaming: sizes %v, trailer %v", sizes, stream.Trailer())
	}
	report.WriteString("server streaming ok\n")

	bidi, err := c.FullDuplexCall(ctx)
	if err != nil {
		return report.String(), fmt.Errorf("bidi: %v", err)
	}
	for _, word := range []string{"one", "two", "three"} {
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(word)}}); err != nil {
			return report.String(), fmt.Errorf("bidi send: %v", err)
		}
		m, err := bidi.Recv()
		if err != nil || string(m.GetPayload().GetBody()) != word {
			return report.String(), fmt.Errorf("bidi: got %v, %v; want %q", m, err, word)
		}
	}
	bidi.CloseSend()
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		return report.String(), fmt.Errorf("bidi end: %v, want EOF (status OK)", err)
	}
	report.WriteString("bidi streaming ok\n")
	return report.String(), nil
}

// protocolsWorkloads: servers in a STRICT mTLS namespace (a gRPC service
// and two TCP echo services sharing port 9000), and a client pod in
// another injected namespace whose app runs the gRPC checks on request.
// self is the test binary, each pod's app.
func protocolsWorkloads(self string) string {
	serve := func(mode string, port int, more ...string) []string {
		return append([]string{self, "protocols-serve", mode, "--addr", fmt.Sprintf("$(SKEIN_APP_IP):%d", port)}, more...)
	}
	tcpA := labels{"app": "tcp-echo", "version": "a"}
	tcpB := labels{"app": "tcp-echo", "version": "b"}
	tlsA := labels{"app": "tls-echo", "version": "a"}
	tlsB := labels{"app": "tls-echo", "version": "b"}
	return manifests(`apiVersion: v1
kind: Namespace
metadata: {name: protocols, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: protocols-client, labels: {istio-injection: enabled}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: protocols}
spec:
  mtls: {mode: STRICT}
`,
		workload{name: "grpc-echo", namespace: "protocols", labels: labels{"app": "grpc-echo"},
			command: serve("grpc", 9090), port: 9090, servicePort: "grpc"}.yaml(),
		service("tcp-echo-a", "protocols", tcpA, "tcp", 9000),
		service("tcp-echo-b", "protocols", tcpB, "tcp-echo", 9000),
		workload{name: "tcp-echo-a", namespace: "protocols", labels: tcpA, command: serve("tcp-echo", 9000), port: 9000}.yaml(),
		workload{name: "tcp-echo-b", namespace: "protocols", labels: tcpB, command: serve("tcp-echo", 9000), port: 9000}.yaml(),
		service("tls-echo", "protocols", tlsA, "tls", 8443),
		service("tls-echo-b", "protocols", tlsB, "https", 8443),
		workload{name: "tls-echo-a", namespace: "protocols", labels: tlsA, command: serve("tls-echo", 8443), port: 8443}.yaml(),
		workload{name: "tls-echo-b", namespace: "protocols", labels: tlsB, command: serve("tls-echo", 8443), port: 8443}.yaml(),
		workload{name: "grpc-client", namespace: "protocols-client", labels: labels{"app": "grpc-client"}, container: "client",
			command: serve("grpc-client", 8080, "--target", "grpc-echo.protocols:9090"), port: 8080, servicePort: "http"}.yaml(),
	)
}

// tcpSplit is Istio's TCP traffic shifting task, with our service names.
const tcpSplit = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: protocols}
spec:
  hosts: [tcp-echo-a]
  tcp:
  - match: [{port: 9000}]
    route:
    - destination: {host: tcp-echo-a, port: {number: 9000}}
      weight: 50
    - destination: {host: tcp-echo-b, port: {number: 9000}}
      weight: 50
`

// tlsBySNI routes TLS by SNI (Istio's "TLS routing" on sidecars): names
// under b.example.com go to tls-echo-b, everything else stays on tls-echo.
const tlsBySNI = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-echo, namespace: protocols}
spec:
  hosts: [tls-echo, "*.example.com"]
  tls:
  - match: [{port: 8443, sniHosts: [b.example.com, "*.b.example.com"]}]
    route:
    - destination: {host: tls-echo-b, port: {number: 8443}}
`

// tlsVia opens a CONNECT tunnel through the sidecar at proxy, makes a TLS
// handshake with sni inside it and returns the server's line.
func tlsVia(proxy, target, sni string) (string, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	tc := tls.Client(&readerConn{Conn: c, r: br}, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	got, err := bufio.NewReader(tc).ReadString('\n')
	return strings.TrimSpace(got), err
}

// readerConn reads through r (which may hold bytes read past a response).
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tcpEchoVia opens a CONNECT tunnel through the sidecar at proxy (what a
// TCP client in local mode does instead of being intercepted), sends one
// line and returns the answer.
func tcpEchoVia(proxy, target, line string) (string, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	fmt.Fprintln(c, line)
	got, err := br.ReadString('\n')
	return strings.TrimSpace(got), err
}

// TestProtocols proves gRPC and plain TCP through two sidecars with STRICT
// mTLS: a grpc-go client in a pod reaches a gRPC service (unary, streaming,
// trailers and error statuses intact), a TCP client tunnels through its
// sidecar to an echo service, the server sidecar reports Istio's TCP
// metrics as mutual_tls, a weighted tcp route splits connections and tls
// routes pick a destination by SNI.
func TestProtocols(t *testing.T) {
	m := startMesh(t, "samples/bookinfo")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m.apply(t, protocolsWorkloads(self))
	pods := map[string]string{}
	eventually(t, 30*time.Second, "the protocols pods ready", func() error {
		for _, ns := range []string{"protocols", "protocols-client"} {
			got, err := readyPods(m, ns)
			if err != nil {
				return err
			}
			for name, ip := range got {
				pods[name] = ip
			}
		}
		for _, prefix := range []string{"grpc-echo-", "tcp-echo-a-", "tcp-echo-b-", "tls-echo-a-", "tls-echo-b-", "grpc-client-"} {
			if len(podsWithPrefix(pods, prefix)) != 1 {
				return fmt.Errorf("no ready %s* pod (ready: %v)", prefix, pods)
			}
		}
		return nil
	})
	ip := func(prefix string) string { return pods[podsWithPrefix(pods, prefix)[0]] }
	clientIP := ip("grpc-client-")
	proxy := clientIP + ":15001"

	t.Run("gRPC through two sidecars", func(t *testing.T) {
		var report string
		eventually(t, 30*time.Second, "the gRPC checks from the client pod", func() error {
			code, body, err := get("http://"+clientIP+":8080/check", nil)
			if err != nil {
				return err
			}
			report = body
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %s", code, body)
			}
			return nil
		})
		t.Logf("gRPC checks:\n%s", report)
		// The server's sidecar served them over mTLS: its inbound gRPC
		// requests are reported with the client's identity.
		_, prom, err := get("http://"+ip("grpc-echo-")+":15000/stats/prometheus", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := regexp.MustCompile(`istio_requests_total\{[^}]*reporter="destination"[^}]*source_principal="spiffe://cluster.local/ns/protocols-client/sa/default"[^}]*request_protocol="grpc"[^}]*grpc_response_status="7"[^}]*connection_security_policy="mutual_tls"`)
		if !want.MatchString(prom) {
			t.Errorf("grpc-echo sidecar has no mutual_tls grpc request with status 7 from the client:\n%s", grepLines(prom, "istio_requests_total"))
		}
		// Istio's gRPC message metrics count each call's messages: a
		// check makes an OK unary call (1 in, 1 out), a denied one (1 in,
		// 0 out), a server stream ending NotFound (1 in, 3 out) and an OK
		// bidi stream (3 in, 3 out).
		samples := scrape(t, ip("grpc-echo-"))
		dest := map[string]string{"reporter": "destination", "request_protocol": "grpc", "source_workload": "grpc-client"}
		calls := sum(samples, "istio_requests_total", dest, "grpc_response_status")
		in := sum(samples, "istio_request_messages_total", dest, "grpc_response_status")
		out := sum(samples, "istio_response_messages_total", dest, "grpc_response_status")
		n := calls["5"]
		if n < 1 || calls["0"] != 2*n || calls["7"] != n ||
			in["0"] != 4*n || out["0"] != 4*n || in["7"] != n || out["7"] != 0 || in["5"] != n || out["5"] != 3*n {
			t.Errorf("gRPC message counts for %v checks: calls %v, request messages %v, response messages %v", n, calls, in, out)
		} else {
			t.Logf("gRPC message metrics over %v checks: calls %v, request messages %v, response messages %v", n, calls, in, out)
		}
		if http := sum(scrape(t, clientIP), "istio_request_messages_total", map[string]string{"request_protocol": "http"}, "reporter"); len(http) != 0 {
			t.Errorf("HTTP requests have message metrics: %v", http)
		}
	})

	t.Run("TCP through two sidecars", func(t *testing.T) {
		var got string
		eventually(t, 30*time.Second, "a TCP echo through the client sidecar", func() error {
			var err error
			got, err = tcpEchoVia(proxy, "tcp-echo-a.protocols:9000", "hello")
			if err == nil && !strings.HasPrefix(got, "tcp-echo-a-") {
				err = fmt.Errorf("answer %q, want one from tcp-echo-a", got)
			}
			return err
		})
		for range 4 {
			if got, err := tcpEchoVia(proxy, "tcp-echo-a.protocols:9000", "hello"); err != nil || !strings.HasSuffix(got, ": hello") {
				t.Fatalf("echo: %q, %v", got, err)
			}
		}
		// Plain TCP to the same port of the other service goes there.
		if got, err := tcpEchoVia(proxy, "tcp-echo-b.protocols:9000", "hi"); err != nil || !strings.HasPrefix(got, "tcp-echo-b-") {
			t.Fatalf("tcp-echo-b: %q, %v", got, err)
		}
		// A plaintext client outside the mesh is refused by STRICT.
		if got, err := plaintextEcho(ip("tcp-echo-a-")+":9000", "sneak"); err == nil {
			t.Errorf("plaintext TCP to a STRICT port answered %q", got)
		}
		opened := regexp.MustCompile(`istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_principal="spiffe://cluster.local/ns/protocols-client/sa/default"[^}]*destination_service="tcp-echo-a.protocols.svc.cluster.local"[^}]*request_protocol="tcp"[^}]*connection_security_policy="mutual_tls"[^}]*\} (\d+)`)
		received := regexp.MustCompile(`istio_tcp_received_bytes_total\{[^}]*reporter="destination"[^}]*connection_security_policy="mutual_tls"[^}]*\} (\d+)`)
		eventually(t, 10*time.Second, "TCP metrics on the tcp-echo-a sidecar", func() error {
			_, prom, err := get("http://"+ip("tcp-echo-a-")+":15000/stats/prometheus", nil)
			if err != nil {
				return err
			}
			o, r := opened.FindStringSubmatch(prom), received.FindStringSubmatch(prom)
			if o == nil || r == nil || atoi(o[1]) < 5 || atoi(r[1]) < 30 {
				return fmt.Errorf("want >= 5 mutual_tls connections and >= 30 bytes:\n%s", grepLines(prom, "istio_tcp_"))
			}
			t.Logf("tcp-echo-a sidecar: %s connections opened, %s bytes received over mTLS", o[1], r[1])
			return nil
		})
		// Istio's TCP metadata exchange told each sidecar the workload at
		// the other end: both reporters label it, as for HTTP.
		eventually(t, 10*time.Second, "TCP metrics labelled with both workloads", func() error {
			dst := sum(scrape(t, ip("tcp-echo-a-")), "istio_tcp_connections_opened_total", map[string]string{
				"reporter": "destination", "source_workload": "grpc-client", "source_app": "grpc-client",
				"source_workload_namespace": "protocols-client", "destination_workload": "tcp-echo-a", "destination_version": "a",
			}, "source_canonical_service")
			src := sum(scrape(t, clientIP), "istio_tcp_connections_opened_total", map[string]string{
				"reporter": "source", "source_workload": "grpc-client", "destination_workload": "tcp-echo-a",
				"destination_app": "tcp-echo", "destination_version": "a", "destination_workload_namespace": "protocols",
				"destination_service": "tcp-echo-a.protocols.svc.cluster.local", "connection_security_policy": "unknown",
			}, "destination_canonical_service")
			if total(dst) < 5 || total(src) < 5 {
				_, prom, _ := get("http://"+clientIP+":15090/stats/prometheus", nil)
				return fmt.Errorf("destination side %v, source side %v; want >= 5 connections each with both workloads; client sidecar:\n%s",
					dst, src, grepLines(prom, "istio_tcp_connections_opened_total"))
			}
			t.Logf("TCP connections with both workloads: %v at tcp-echo-a, %v at grpc-client", dst, src)
			return nil
		})
	})

	t.Run("weighted tcp route", func(t *testing.T) {
		m.apply(t, tcpSplit)
		var counts map[string]int
		eventually(t, 30*time.Second, "connections split between tcp-echo-a and tcp-echo-b", func() error {
			counts = map[string]int{}
			for range 40 {
				got, err := tcpEchoVia(proxy, "tcp-echo-a.protocols:9000", "x")
				if err != nil {
					return err
				}
				switch {
				case strings.HasPrefix(got, "tcp-echo-a-"):
					counts["a"]++
				case strings.HasPrefix(got, "tcp-echo-b-"):
					counts["b"]++
				}
			}
			if counts["a"] < 8 || counts["b"] < 8 {
				return fmt.Errorf("40 connections: %v", counts)
			}
			return nil
		})
		t.Logf("50/50 tcp route over 40 connections: %v", counts)
	})

	t.Run("tls route by SNI", func(t *testing.T) {
		if got, err := tlsVia(proxy, "tls-echo.protocols:8443", "b.example.com"); err != nil || !strings.HasPrefix(got, "tls-echo-a-") {
			t.Fatalf("before the VirtualService, SNI b.example.com: %q, %v; want tls-echo-a", got, err)
		}
		m.apply(t, tlsBySNI)
		for _, tc := range []struct{ sni, want string }{
			{"b.example.com", "tls-echo-b-"},
			{"x.b.example.com", "tls-echo-b-"},
			{"a.example.com", "tls-echo-a-"},
		} {
			eventually(t, 30*time.Second, "SNI "+tc.sni+" on "+tc.want+"*", func() error {
				got, err := tlsVia(proxy, "tls-echo.protocols:8443", tc.sni)
				if err == nil && (!strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "sni="+tc.sni)) {
					err = fmt.Errorf("answer %q", got)
				}
				return err
			})
		}
	})
}

// plaintextEcho talks to addr directly, without a sidecar or TLS.
func plaintextEcho(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(got), err
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// grepLines keeps the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
