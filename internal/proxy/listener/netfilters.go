package listener

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/filters/metadataexchange"
	"github.com/skein-mesh/skein/internal/proxy/hcm"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
)

// networkFilter is one kind of network filter: how a chain compiles it.
// A terminal filter (http_connection_manager, tcp_proxy) ends the chain;
// the others act on the connection before tcp_proxy.
type networkFilter struct {
	terminal bool
	build    func(b *chainBuild, f *listenerv3.Filter) error
}

// networkRegistry maps network filter config types (for Istio's own, the
// TypedStruct's type_url) to the filters the proxy implements, so a filter
// nobody registered is a clean NACK, as the HTTP filter registry does for
// HTTP filters. Filters that are both HTTP and network filters (istio.stats)
// come from the HTTP registry as filters.TCPObserver.
type networkRegistry map[string]networkFilter

func (r networkRegistry) register(config proto.Message, nf networkFilter) {
	r["type.googleapis.com/"+string(config.ProtoReflect().Descriptor().FullName())] = nf
}

// networkFilters is the proxy's network filter registry.
var networkFilters = func() networkRegistry {
	r := networkRegistry{}
	r.register(&hcmv3.HttpConnectionManager{}, networkFilter{terminal: true, build: buildHCM})
	r.register(&tcpproxyv3.TcpProxy{}, networkFilter{terminal: true, build: buildTCPProxy})
	r.register(&rbacnetv3.RBAC{}, networkFilter{build: buildNetworkRBAC})
	r[metadataexchange.TypeURL] = networkFilter{build: buildExchange}
	return r
}()

// chainBuild collects a filter chain's network filters as they compile.
type chainBuild struct {
	d         *deps
	exchange  bool
	rbac      []*networkRBAC
	observers []filters.TCPObserver
	http      *hcm.ConnectionManager
	tcp       *tcpProxy
}

// compileNetworkFilters compiles a chain's filters: any non-terminal
// filters, then exactly one terminal filter.
func compileNetworkFilters(fc *filterChain, fs []*listenerv3.Filter, d *deps) error {
	b := &chainBuild{d: d}
	for i, f := range fs {
		nf, err := lookupNetworkFilter(f, d)
		if err != nil {
			return err
		}
		if nf.terminal != (i == len(fs)-1) {
			names := make([]string, 0, len(fs))
			for _, f := range fs {
				names = append(names, f.GetName())
			}
			return fmt.Errorf("exactly one network filter (%s or %s) is supported, got %q", hcmFilterName, tcpProxyFilterName, names)
		}
		if err := filterFields.Check(f); err != nil {
			return fmt.Errorf("filter %q: %v", f.GetName(), err)
		}
		if err := nf.build(b, f); err != nil {
			return err
		}
	}
	if len(fs) == 0 {
		return fmt.Errorf("exactly one network filter (%s or %s) is supported, got none", hcmFilterName, tcpProxyFilterName)
	}
	fc.http, fc.tcp = b.http, b.tcp
	return nil
}

// lookupNetworkFilter finds the kind of f by its typed_config type.
func lookupNetworkFilter(f *listenerv3.Filter, d *deps) (networkFilter, error) {
	tc := f.GetTypedConfig()
	if tc == nil {
		return networkFilter{}, fmt.Errorf("network filter %q has no typed_config", f.GetName())
	}
	typeURL := tc.GetTypeUrl()
	if inner, _, ok := filters.ReadTypedStruct(tc); ok {
		typeURL = inner
	}
	if nf, ok := networkFilters[typeURL]; ok {
		return nf, nil
	}
	if d.HTTPFilters != nil && d.HTTPFilters.Has(tc) {
		return networkFilter{build: buildTCPObserver}, nil
	}
	return networkFilter{}, fmt.Errorf("network filter %q (%s) is not supported yet", f.GetName(), strings.TrimPrefix(typeURL, "type.googleapis.com/"))
}

func buildHCM(b *chainBuild, f *listenerv3.Filter) error {
	var cfg hcmv3.HttpConnectionManager
	if err := confparse.Unmarshal(f.GetTypedConfig(), &cfg); err != nil {
		return fmt.Errorf("filter %q: %v", f.GetName(), err)
	}
	if len(b.rbac) > 0 || len(b.observers) > 0 || b.exchange {
		return fmt.Errorf("network filters other than %s are supported only before %s", hcmFilterName, tcpProxyFilterName)
	}
	h, err := hcm.New(&cfg, &b.d.Env)
	if err != nil {
		return fmt.Errorf("%s: %v", hcmFilterName, err)
	}
	b.http = h
	return nil
}

func buildTCPProxy(b *chainBuild, f *listenerv3.Filter) error {
	var cfg tcpproxyv3.TcpProxy
	if err := confparse.Unmarshal(f.GetTypedConfig(), &cfg); err != nil {
		return fmt.Errorf("filter %q: %v", f.GetName(), err)
	}
	t, err := newTCPProxy(&cfg, b.d)
	if err != nil {
		return fmt.Errorf("%s: %v", tcpProxyFilterName, err)
	}
	t.rbac = b.rbac
	if b.exchange {
		t.exchange = b.d.exchange
	}
	for _, o := range b.observers {
		o.BindTCP(b.d.Stats, t.inbound())
	}
	t.observers = b.observers
	b.tcp = t
	return nil
}

func buildNetworkRBAC(b *chainBuild, f *listenerv3.Filter) error {
	var cfg rbacnetv3.RBAC
	if err := confparse.Unmarshal(f.GetTypedConfig(), &cfg); err != nil {
		return fmt.Errorf("filter %q: %v", f.GetName(), err)
	}
	n, err := newNetworkRBAC(&cfg, b.d)
	if err != nil {
		return fmt.Errorf("%s %q: %v", netRBACFilterName, f.GetName(), err)
	}
	b.rbac = append(b.rbac, n)
	return nil
}

// buildExchange enables Istio's TCP metadata exchange (istio.metadata_exchange).
func buildExchange(b *chainBuild, f *listenerv3.Filter) error {
	if _, err := metadataexchange.Is(f.GetTypedConfig()); err != nil {
		return fmt.Errorf("filter %q: %v", f.GetName(), err)
	}
	b.exchange = true
	return nil
}

// buildTCPObserver compiles a filter that observes connections
// (istio.stats), built through the HTTP filter registry that knows its
// config type.
func buildTCPObserver(b *chainBuild, f *listenerv3.Filter) error {
	built, err := b.d.HTTPFilters.Build(f.GetName(), f.GetTypedConfig())
	if err != nil {
		return fmt.Errorf("network filter %q: %v", f.GetName(), err)
	}
	o, ok := built.(filters.TCPObserver)
	if !ok {
		return fmt.Errorf("network filter %q is an HTTP filter; it cannot run before %s", f.GetName(), tcpProxyFilterName)
	}
	b.observers = append(b.observers, o)
	return nil
}
