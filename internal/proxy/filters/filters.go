// Package filters is the proxy's HTTP filter extension point. Each filter
// (RBAC, JWT authentication, fault injection, CORS, local rate limit, ...)
// lives in its own subpackage and registers a Factory keyed by the Envoy
// typed_config type it implements. The connection manager builds the
// configured chain through a Registry, so a filter nobody registered is a
// clean NACK, and runs it on every request before forwarding.
package filters

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/router"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Conn describes the downstream connection a request arrived on.
type Conn struct {
	Source          netip.AddrPort // the direct peer
	Destination     netip.AddrPort // the local address it connected to
	TLS             bool
	SNI             string
	PeerCertificate *x509.Certificate // verified client certificate (mTLS)
	// PeerPrincipal is the peer's SPIFFE identity without the scheme, as
	// Istio's policies write it: "cluster.local/ns/bookinfo/sa/productpage".
	PeerPrincipal string
	// PeerMetadata is the node metadata the proxy at the other end sent in
	// Istio's TCP metadata exchange: the downstream's on an inbound
	// connection, the upstream's on an outbound one (nil: none).
	PeerMetadata *structpb.Struct
}

// Request is one request's state shared by the filters of a chain.
type Request struct {
	HTTP *http.Request
	Conn *Conn
	// Route is the routing decision, nil when no route matched (filters
	// still run: an authorization filter denies before a 404).
	Route *router.Decision
	// Metadata is Envoy's dynamic metadata, by filter name: how one filter
	// tells a later one (jwt_authn → rbac) what it found.
	Metadata map[string]map[string]any
	// ResponseFlags collects Envoy response flags set by filters (e.g. "RL").
	ResponseFlags []string

	// state is Envoy's filter state: values filters keep for the rest of
	// the request (the tracing span, the peer found by metadata exchange)
	// that, unlike Metadata, no policy matches on. Inline, since every
	// request carries a few and a map per request costs allocations.
	state     [4]stateEntry
	stateMore []stateEntry
}

// StateKey names one kind of filter state; compare by identity.
type StateKey struct{ name string }

// NewStateKey returns a key; name is for debugging.
func NewStateKey(name string) *StateKey { return &StateKey{name: name} }

func (k *StateKey) String() string { return k.name }

type stateEntry struct {
	key   *StateKey
	value any
}

// SetState records value under k, replacing an earlier one.
func (r *Request) SetState(k *StateKey, value any) {
	for i := range r.state {
		if e := &r.state[i]; e.key == k || e.key == nil {
			*e = stateEntry{key: k, value: value}
			return
		}
	}
	for i := range r.stateMore {
		if r.stateMore[i].key == k {
			r.stateMore[i].value = value
			return
		}
	}
	r.stateMore = append(r.stateMore, stateEntry{key: k, value: value})
}

// State is the value recorded under k, or nil.
func (r *Request) State(k *StateKey) any {
	for _, e := range r.state {
		if e.key == k {
			return e.value
		}
	}
	for _, e := range r.stateMore {
		if e.key == k {
			return e.value
		}
	}
	return nil
}

// SetMetadata records a value for later filters under the filter's name.
func (r *Request) SetMetadata(filter, key string, value any) {
	if r.Metadata == nil {
		r.Metadata = map[string]map[string]any{}
	}
	m := r.Metadata[filter]
	if m == nil {
		m = map[string]any{}
		r.Metadata[filter] = m
	}
	m[key] = value
}

// LocalReply makes the connection manager answer instead of forwarding.
type LocalReply struct {
	Status  int
	Body    string
	Flag    string // response flag for logs and metrics, e.g. "RL", "UAEX", "DI"
	Headers http.Header
}

// HTTPFilter acts on requests before they are forwarded. A non-nil reply
// stops the chain and is sent to the client.
type HTTPFilter interface {
	OnRequest(req *Request) *LocalReply
}

// ResponseFilter is implemented by filters that also act on the response
// headers, before they are written (CORS, rate-limit headers).
type ResponseFilter interface {
	OnResponse(req *Request, status int, header http.Header)
}

// StatsUser is implemented by filters that keep Envoy statistics. The
// connection manager calls UseStats once after building the filter, with
// its own scope prefix "http.<stat_prefix>.".
type StatsUser interface {
	UseStats(store *stats.Store, prefix string)
}

// TCPObserver is implemented by filters that can also run as a network
// filter before tcp_proxy (Istio's istio.stats is both an HTTP and a
// network filter). The listener binds it once per tcp_proxy, then reports
// every proxied connection.
type TCPObserver interface {
	// BindTCP binds the filter to the proxy's store; inbound marks a
	// sidecar's inbound side (the destination reports).
	BindTCP(store *stats.Store, inbound bool)
	// OpenTCP records a connection to cluster that reached its upstream;
	// the returned function records its end with the bytes received from
	// and sent to the downstream.
	OpenTCP(conn *Conn, cluster string) (closed func(received, sent int64))
}

// Factory builds a filter from its typed config (already unwrapped from
// any TypedStruct). It validates everything it is given: an unsupported
// field is an error, which the proxy turns into a NACK.
type Factory func(config *anypb.Any) (HTTPFilter, error)

// PerRouteFactory compiles a filter's per-route config (one
// typed_per_filter_config entry, already unwrapped from any TypedStruct)
// into the value the filter reads from router.Decision.FilterConfig. It
// runs when a route config arrives; an error NACKs the route config.
type PerRouteFactory func(config *anypb.Any) (any, error)

// Registry maps filter config types to factories.
type Registry struct {
	byType   map[string]Factory
	perRoute map[string]PerRouteFactory // by per-route config type URL
	names    map[string]string          // canonical filter name → type URL
	// structTypes are filters configured by a TypedStruct whose type has no
	// Go proto here (Istio's own filters, e.g. stats.PluginConfig).
	structTypes map[string]StructFactory
}

// StructFactory builds a filter from a TypedStruct's value.
type StructFactory func(value *structpb.Struct) (HTTPFilter, error)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byType: map[string]Factory{}, perRoute: map[string]PerRouteFactory{},
		names: map[string]string{}, structTypes: map[string]StructFactory{}}
}

var _ router.PerFilterCompiler = (*Registry)(nil)

// RegisterPerRoute declares the per-route config message a filter reads
// from typed_per_filter_config and how to compile it.
func (r *Registry) RegisterPerRoute(config proto.Message, f PerRouteFactory) {
	r.perRoute[typeURLOf(config)] = f
}

// PerRoute compiles one typed_per_filter_config entry with the factory
// registered for its type. A type no filter registered is an error, as in
// Envoy: the route config is refused rather than applied without it.
func (r *Registry) PerRoute(name string, config *anypb.Any) (any, error) {
	unwrapped, err := Unwrap(config)
	if err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %v", name, err)
	}
	f, ok := r.perRoute[unwrapped.GetTypeUrl()]
	if !ok {
		return nil, fmt.Errorf("typed_per_filter_config %q: per-route config %s is not supported",
			name, strings.TrimPrefix(unwrapped.GetTypeUrl(), "type.googleapis.com/"))
	}
	v, err := f(unwrapped)
	if err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %v", name, err)
	}
	return v, nil
}

func typeURLOf(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// RegisterTypedStruct adds a filter configured by a udpa/xds TypedStruct
// with the given type_url, for config types that exist only as JSON
// (Istio's istio.stats filter, type.googleapis.com/stats.PluginConfig).
func (r *Registry) RegisterTypedStruct(name, typeURL string, f StructFactory) {
	r.structTypes[typeURL] = f
	r.names[name] = typeURL
}

// Register adds a filter: its canonical name ("envoy.filters.http.rbac"),
// the config message it takes, and its factory.
func (r *Registry) Register(name string, config proto.Message, f Factory) {
	typeURL := typeURLOf(config)
	r.byType[typeURL] = f
	r.names[name] = typeURL
}

// Has reports whether a filter is registered for config's type (after
// unwrapping a TypedStruct).
func (r *Registry) Has(config *anypb.Any) bool {
	if typeURL, _, ok := ReadTypedStruct(config); ok {
		if _, ok := r.structTypes[typeURL]; ok {
			return true
		}
		_, ok := r.byType[typeURL]
		return ok
	}
	_, ok := r.byType[config.GetTypeUrl()]
	return ok
}

// Build compiles one configured filter. The filter is found by its
// typed_config type (names are free-form in Envoy).
func (r *Registry) Build(name string, config *anypb.Any) (HTTPFilter, error) {
	if config == nil {
		return nil, fmt.Errorf("http filter %q: typed_config is required", name)
	}
	if typeURL, value, ok := ReadTypedStruct(config); ok {
		if sf := r.structTypes[typeURL]; sf != nil {
			filter, err := sf(value)
			if err != nil {
				return nil, fmt.Errorf("http filter %q: %v", name, err)
			}
			return filter, nil
		}
	}
	unwrapped, err := Unwrap(config)
	if err != nil {
		return nil, fmt.Errorf("http filter %q: %v", name, err)
	}
	f, ok := r.byType[unwrapped.GetTypeUrl()]
	if !ok {
		return nil, fmt.Errorf("http filter %q (%s) is not supported", name, strings.TrimPrefix(unwrapped.GetTypeUrl(), "type.googleapis.com/"))
	}
	filter, err := f(unwrapped)
	if err != nil {
		return nil, fmt.Errorf("http filter %q: %v", name, err)
	}
	return filter, nil
}

// Unwrap turns a udpa/xds TypedStruct (how EnvoyFilter patches often carry
// config) into the typed message it describes; other configs pass through.
func Unwrap(config *anypb.Any) (*anypb.Any, error) {
	typeURL, value, ok := ReadTypedStruct(config)
	if !ok {
		return config, nil
	}
	b, err := protojson.Marshal(value)
	if err != nil {
		return nil, err
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("TypedStruct type_url %q: unknown type", typeURL)
	}
	msg := mt.New().Interface()
	if err := protojson.Unmarshal(b, msg); err != nil {
		return nil, fmt.Errorf("TypedStruct value for %s: %v", typeURL, err)
	}
	return anypb.New(msg)
}

// ReadTypedStruct reads a udpa or xds TypedStruct, the config of filters
// whose proto is not part of Envoy's API (Istio's own); ok=false for other
// configs (or one that does not decode, which Unwrap then reports).
func ReadTypedStruct(config *anypb.Any) (typeURL string, value *structpb.Struct, ok bool) {
	var ts interface {
		proto.Message
		GetTypeUrl() string
		GetValue() *structpb.Struct
	}
	switch {
	case config.MessageIs(&udpav1.TypedStruct{}):
		ts = &udpav1.TypedStruct{}
	case config.MessageIs(&xdsv3.TypedStruct{}):
		ts = &xdsv3.TypedStruct{}
	default:
		return "", nil, false
	}
	if err := confparse.Unmarshal(config, ts); err != nil {
		return "", nil, false
	}
	return ts.GetTypeUrl(), ts.GetValue(), true
}

// Chain is a compiled list of filters, run in order.
type Chain []HTTPFilter

// OnRequest runs the filters until one replies.
func (c Chain) OnRequest(req *Request) *LocalReply {
	for _, f := range c {
		if reply := f.OnRequest(req); reply != nil {
			return reply
		}
	}
	return nil
}

// OnResponse runs the response side of the filters, last first, as Envoy's
// encoder filters run in reverse order.
func (c Chain) OnResponse(req *Request, status int, header http.Header) {
	for i := len(c) - 1; i >= 0; i-- {
		if rf, ok := c[i].(ResponseFilter); ok {
			rf.OnResponse(req, status, header)
		}
	}
}
