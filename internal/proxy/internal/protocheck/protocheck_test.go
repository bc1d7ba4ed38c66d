package protocheck

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestCheck(t *testing.T) {
	allowed := Fields(&corev3.SocketAddress{}, "address", "port_value")
	if err := allowed.Check(&corev3.SocketAddress{Address: "127.0.0.1"}); err != nil {
		t.Errorf("allowed field rejected: %v", err)
	}
	err := allowed.Check(&corev3.SocketAddress{Address: "127.0.0.1", Ipv4Compat: true})
	if err == nil || !strings.Contains(err.Error(), "field ipv4_compat is not supported yet") {
		t.Errorf("Check = %v, want ipv4_compat named", err)
	}
	if err := allowed.Check((*corev3.SocketAddress)(nil)); err != nil {
		t.Errorf("nil message: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Fields accepted a field name the message does not have")
		}
	}()
	Fields(&wrapperspb.BoolValue{}, "no_such_field")
}

func TestCheckAs(t *testing.T) {
	allowed := Fields(&corev3.SocketAddress{}, "address", "port_value")
	if err := allowed.CheckAs(&corev3.SocketAddress{Address: "127.0.0.1"}, "socket address"); err != nil {
		t.Errorf("allowed field rejected: %v", err)
	}
	err := allowed.CheckAs(&corev3.SocketAddress{Ipv4Compat: true}, "socket address")
	if err == nil || err.Error() != `unsupported socket address field "ipv4_compat"` {
		t.Errorf("CheckAs = %v, want ipv4_compat named after the message", err)
	}
}
