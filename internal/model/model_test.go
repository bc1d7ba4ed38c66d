package model_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/model"
)

func TestParseProtocol(t *testing.T) {
	for in, want := range map[string]model.Protocol{
		"http": model.ProtocolHTTP, "http-web": model.ProtocolHTTP, "HTTP2": model.ProtocolHTTP2,
		"grpc": model.ProtocolGRPC, "grpc-web": model.ProtocolGRPC, "tcp": model.ProtocolTCP,
		"mongo-db": model.ProtocolTCP, "https": model.ProtocolHTTPS, "tls": model.ProtocolTLS,
		"": model.ProtocolUnsupported, "web": model.ProtocolUnsupported, "kubernetes.io/h2c": model.ProtocolHTTP2,
	} {
		if got := model.ParseProtocol(in); got != want {
			t.Errorf("ParseProtocol(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseNode(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "bookinfo", "SERVICE_ACCOUNT": "bookinfo-reviews", "APP_IP": "127.2.0.3",
		"INTERCEPTION_MODE": "NONE", "LABELS": map[string]any{"app": "reviews", "version": "v1"},
	})
	p, err := model.ParseNode(&corev3.Node{Id: "sidecar~127.1.0.3~reviews-v1-x.bookinfo~bookinfo.svc.cluster.local", Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != model.SidecarProxy || p.IP != "127.1.0.3" || p.PodName != "reviews-v1-x" || p.Namespace != "bookinfo" ||
		p.AppIP != "127.2.0.3" || p.Labels["version"] != "v1" || p.ServiceAccount != "bookinfo-reviews" {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range []string{"", "sidecar~1.2.3.4", "gateway~1.2.3.4~a.b~b.svc.cluster.local", "router~1.2.3.4~nons~"} {
		if _, err := model.ParseNode(&corev3.Node{Id: bad}); err == nil {
			t.Errorf("ParseNode(%q) succeeded, want error", bad)
		}
	}
}
