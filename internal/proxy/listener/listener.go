// Package listener is the proxy's downstream side: it turns LDS listeners
// into bound sockets that serve HTTP (an HttpConnectionManager: HTTP/1.1 and
// h2c on one port) or TCP (tcp_proxy), following Skein's local-mode binding
// rules: the virtualOutbound listener is an HTTP forward proxy that hands
// each request to the bind_to_port=false listener of its target port, and
// each destination_port chain of virtualInbound gets its own socket on the
// pod IP. Listener updates add, replace and remove sockets without dropping
// in-flight requests.
package listener

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/tlsconfig"
)

// Clusters finds upstream clusters by name (the cluster manager).
type Clusters = hcm.Clusters

// Routes finds compiled RDS route tables by route configuration name.
type Routes = hcm.Routes

// deps is what every compiled network filter needs: the connection
// manager's environment, and what TLS and TCP filters add.
type deps struct {
	hcm.Env
	// certs is the workload identity for SDS "default"/"ROOTCA" (nil: none).
	certs tlsconfig.CertSource
	// exchange runs Istio's TCP metadata exchange (istio.metadata_exchange).
	exchange *metadataexchange.Exchanger
}

// Network filter names; a filter is recognised by its typed_config type.
const (
	hcmFilterName      = "envoy.filters.network.http_connection_manager"
	tcpProxyFilterName = "envoy.filters.network.tcp_proxy"
)

var (
	listenerFields = protocheck.Fields(&listenerv3.Listener{},
		"name", "address", "filter_chains", "default_filter_chain", "use_original_dst",
		"bind_to_port", "traffic_direction", "listener_filters", "listener_filters_timeout",
		"continue_on_listener_filters_timeout", "stat_prefix", "metadata",
		"per_connection_buffer_limit_bytes", "drain_type")
	listenerFilterFields = protocheck.Fields(&listenerv3.ListenerFilter{}, "name", "typed_config")
	chainFields          = protocheck.Fields(&listenerv3.FilterChain{}, "filter_chain_match", "filters", "name", "metadata", "transport_socket")
	chainMatchFields     = protocheck.Fields(&listenerv3.FilterChainMatch{}, "destination_port", "transport_protocol", "application_protocols", "server_names")
	filterFields         = protocheck.Fields(&listenerv3.Filter{}, "name", "typed_config")
	socketAddressFields  = protocheck.Fields(&corev3.SocketAddress{}, "address", "port_value", "protocol")
)

// Listener filters whose job local mode already does (original destination
// comes from the forward proxy request, protocol from the HTTP server).
var localModeListenerFilters = map[string]bool{
	"envoy.filters.listener.original_dst":   true,
	"envoy.filters.listener.http_inspector": true,
	"envoy.filters.listener.tls_inspector":  true,
}

// HTTP application protocols a plaintext HTTP/1.1 + h2c server serves.
var plaintextHTTPProtocols = map[string]bool{"http/1.0": true, "http/1.1": true, "h2c": true}

// Listener is a compiled LDS listener.
type Listener struct {
	Name   string
	Config *listenerv3.Listener

	ip          string // as configured, e.g. 0.0.0.0
	port        uint32
	bindToPort  bool
	originalDst bool // use_original_dst: the outbound capture listener
	chains      []*filterChain
	fallback    *filterChain // the default_filter_chain or the chain without match
	defaultFC   *filterChain // the default_filter_chain only
	// sniff is set when chains differ by transport protocol, SNI or ALPN:
	// connections are then peeked at before a chain is chosen.
	sniff bool

	// hostChains memoises chainFor: the outbound forward proxy asks for
	// every request. A listener is immutable, so entries never go stale;
	// bounded because hosts come from applications (passthrough targets).
	hostChains     sync.Map // chainKey → *filterChain (nil stored as noChain)
	hostChainCount atomic.Int32
}

type chainKey struct {
	host string
	port uint32
}

// maxHostChains bounds hostChains; beyond it lookups are not memoised.
const maxHostChains = 4096

var noChain = &filterChain{}

// filterChain is one compiled chain: exactly one of http or tcp is set.
type filterChain struct {
	name        string
	destPort    uint32   // 0: any
	serverNames []string // SNI, exact or "*.suffix"; empty: any
	transport   string   // "tls", "raw_buffer"; empty: any
	alpn        []string // application_protocols; empty: any
	// hosts: the destination host names this chain serves in local mode
	// (filter chain metadata, see outboundHostsKey); empty: any.
	hosts []string
	tls   *tls.Config
	http  *hcm.ConnectionManager
	tcp   *tcpProxy
}

func compileListener(pl *listenerv3.Listener, d *deps) (*Listener, error) {
	if err := listenerFields.Check(pl); err != nil {
		return nil, err
	}
	if pl.GetTrafficDirection() == corev3.TrafficDirection_OUTBOUND {
		// Connection managers of outbound listeners make client spans.
		outbound := *d
		outbound.Outbound = true
		d = &outbound
	}
	sa := pl.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("address must be a socket_address")
	}
	if err := socketAddressFields.Check(sa); err != nil {
		return nil, fmt.Errorf("address: %v", err)
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, fmt.Errorf("address: protocol %s is not supported", sa.GetProtocol())
	}
	if _, err := netip.ParseAddr(sa.GetAddress()); err != nil {
		return nil, fmt.Errorf("address %q is not an IP address", sa.GetAddress())
	}
	l := &Listener{
		Name:        pl.GetName(),
		Config:      pl,
		ip:          sa.GetAddress(),
		port:        sa.GetPortValue(),
		bindToPort:  pl.GetBindToPort() == nil || pl.GetBindToPort().GetValue(),
		originalDst: pl.GetUseOriginalDst().GetValue(),
	}
	for i, lf := range pl.GetListenerFilters() {
		if err := listenerFilterFields.Check(lf); err != nil {
			return nil, fmt.Errorf("listener_filters[%d]: %v", i, err)
		}
		if !localModeListenerFilters[lf.GetName()] {
			return nil, fmt.Errorf("listener filter %q is not supported yet", lf.GetName())
		}
	}
	seen := map[string]string{}
	for i, pc := range pl.GetFilterChains() {
		fc, err := compileChain(pc, d)
		if err != nil {
			return nil, fmt.Errorf("filter chain %s: %v", chainLabel(pc, i), err)
		}
		if prev, dup := seen[fc.matchKey()]; dup {
			return nil, fmt.Errorf("filter chains %s and %s have the same filter_chain_match", prev, chainLabel(pc, i))
		}
		seen[fc.matchKey()] = chainLabel(pc, i)
		l.chains = append(l.chains, fc)
		if fc.matchesAll() {
			l.fallback = fc
		}
		l.sniff = l.sniff || fc.needsSniff()
	}
	if dc := pl.GetDefaultFilterChain(); dc != nil {
		fc, err := compileChain(dc, d)
		if err != nil {
			return nil, fmt.Errorf("default_filter_chain: %v", err)
		}
		if !fc.matchesAll() {
			return nil, fmt.Errorf("default_filter_chain must not have a filter_chain_match")
		}
		if l.fallback != nil {
			return nil, fmt.Errorf("both default_filter_chain and a chain without match: ambiguous")
		}
		l.fallback, l.defaultFC = fc, fc
		l.sniff = l.sniff || fc.needsSniff()
	}
	if len(l.chains) == 0 && l.fallback == nil {
		return nil, fmt.Errorf("no filter chains")
	}
	return l, nil
}

func chainLabel(pc *listenerv3.FilterChain, i int) string {
	if pc.GetName() != "" {
		return strconv.Quote(pc.GetName())
	}
	return fmt.Sprintf("[%d]", i)
}

func compileChain(pc *listenerv3.FilterChain, d *deps) (*filterChain, error) {
	if err := chainFields.Check(pc); err != nil {
		return nil, err
	}
	fc := &filterChain{name: pc.GetName()}
	if m := pc.GetFilterChainMatch(); m != nil {
		if err := chainMatchFields.Check(m); err != nil {
			return nil, fmt.Errorf("filter_chain_match: %v", err)
		}
		switch m.GetTransportProtocol() {
		case "", "raw_buffer", "tls":
		default:
			return nil, fmt.Errorf("filter_chain_match: transport_protocol %q is not supported (tls and raw_buffer are)", m.GetTransportProtocol())
		}
		for _, sn := range m.GetServerNames() {
			if sn == "" || strings.Contains(sn[1:], "*") || (strings.HasPrefix(sn, "*") && !strings.HasPrefix(sn, "*.")) {
				return nil, fmt.Errorf("filter_chain_match: server_names %q is not a host name or *.suffix", sn)
			}
		}
		fc.destPort = m.GetDestinationPort().GetValue()
		fc.transport = m.GetTransportProtocol()
		fc.serverNames = m.GetServerNames()
		fc.alpn = m.GetApplicationProtocols()
	}
	hosts, err := chainHosts(pc)
	if err != nil {
		return nil, err
	}
	fc.hosts = hosts
	if ts := pc.GetTransportSocket(); ts != nil {
		sock, err := tlsconfig.Compile(ts, true, d.certs)
		if err != nil {
			return nil, fmt.Errorf("transport_socket: %v", err)
		}
		fc.tls = sock.Downstream
		if fc.tls != nil && fc.transport == "raw_buffer" {
			return nil, fmt.Errorf("transport_socket: a TLS transport socket on a raw_buffer chain can never handshake")
		}
	}
	if err := compileNetworkFilters(fc, pc.GetFilters(), d); err != nil {
		return nil, err
	}
	return fc, nil
}

// chainFor picks the chain serving plaintext connections to host:port (the
// outbound handoff, where the forward proxy knows the target).
func (l *Listener) chainFor(host string, port uint32) *filterChain {
	key := chainKey{host, port}
	if fc, ok := l.hostChains.Load(key); ok {
		if fc == noChain {
			return nil
		}
		return fc.(*filterChain)
	}
	fc := l.selectChain(port, connMeta{transport: "raw_buffer", plaintextHTTP: true, host: host})
	if l.hostChainCount.Add(1) <= maxHostChains {
		stored := fc
		if stored == nil {
			stored = noChain
		}
		l.hostChains.Store(key, stored)
	}
	return fc
}

// outboundHostsKey is the filter chain metadata namespace naming the
// destination hosts of a chain: {"hosts": ["svc.ns.svc.cluster.local",
// "svc.ns.svc.cluster.local:9000", ...]}. In local mode there are no
// service IPs to match on (Istio's <serviceIP>_<port> TCP listeners), so
// the forward proxy matches the target host of a CONNECT or absolute-form
// request against these names instead.
const outboundHostsKey = "skein.io/outbound"

func chainHosts(pc *listenerv3.FilterChain) ([]string, error) {
	md, ok := pc.GetMetadata().GetFilterMetadata()[outboundHostsKey]
	if !ok {
		return nil, nil
	}
	for k := range md.GetFields() {
		if k != "hosts" {
			return nil, fmt.Errorf("metadata.filter_metadata[%q]: field %q is not supported (hosts is)", outboundHostsKey, k)
		}
	}
	var hosts []string
	for i, v := range md.GetFields()["hosts"].GetListValue().GetValues() {
		h, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok || h.StringValue == "" {
			return nil, fmt.Errorf("metadata.filter_metadata[%q].hosts[%d] must be a non-empty string", outboundHostsKey, i)
		}
		hosts = append(hosts, strings.ToLower(h.StringValue))
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("metadata.filter_metadata[%q].hosts must list at least one host", outboundHostsKey)
	}
	return hosts, nil
}

// hostPort formats ip and port.
func hostPort(ip string, port uint32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}
