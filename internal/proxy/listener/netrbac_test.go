package listener

import (
	"log/slog"
	"net"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// TestNetworkRBAC compiles a chain with network RBAC before tcp_proxy and
// checks connections from an allowed and a denied source block.
func TestNetworkRBAC(t *testing.T) {
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"deny-127.0.0.1": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{
			AddressPrefix: "127.0.0.1", PrefixLen: wrapperspb.UInt32(32)}}}},
	}}}
	rbacAny, _ := anypb.New(&rbacnetv3.RBAC{StatPrefix: "tcp.", Rules: rules})
	tpAny, _ := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "in", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})
	d := &deps{Env: hcm.Env{Stats: stats.NewStore(), Log: slog.Default()}}
	fc, err := compileChain(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{
		{Name: netRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: rbacAny}},
		{Name: tcpProxyFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tpAny}},
	}}, d)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, src := range []struct {
		ip    string
		allow bool
	}{{"127.0.0.1", false}, {"127.0.0.2", true}} {
		dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src.ip)}}
		c, err := dialer.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := fc.tcp.authorize(s); got != src.allow {
			t.Errorf("connection from %s: allowed = %v, want %v", src.ip, got, src.allow)
		}
		c.Close()
		s.Close()
	}
	if n := d.Stats.Counter("tcp.rbac.denied").Value(); n != 1 {
		t.Errorf("tcp.rbac.denied = %d, want 1", n)
	}
	// Before an HTTP connection manager, network RBAC is refused.
	_, err = compileChain(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{
		{Name: netRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: rbacAny}},
	}}, d)
	if err == nil {
		t.Error("network RBAC alone accepted")
	}
}
