package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skein-mesh/skein/internal/proxy/xdsclient"
)

// configDump answers like Envoy's /config_dump: a ConfigDump whose configs
// are the bootstrap, clusters, (endpoints with ?include_eds), listeners and
// routes dumps, in that order.
func (a *admin) configDump(w http.ResponseWriter, r *http.Request) {
	dump, err := ConfigDump(a.opts.Source, a.opts.Started, r.URL.Query().Has("include_eds"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b, err := jsonOptions.Marshal(dump)
	if err != nil {
		http.Error(w, "cannot encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(redactPrivateKeys(b), '\n'))
}

// redactPrivateKeys replaces every private key in a JSON dump (a gateway's
// credentialName key arrives inline in its listener) as Envoy's admin
// does: {"inline_string": "[redacted]"}. The dump is readable by every
// local user; the key is the gateway's alone.
func redactPrivateKeys(b []byte) []byte {
	if !bytes.Contains(b, []byte(`"private_key"`)) && !bytes.Contains(b, []byte(`"privateKey"`)) {
		return b
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if k == "private_key" || k == "privateKey" {
					t[k] = map[string]any{"inline_string": "[redacted]"}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	out, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return b
	}
	return out
}

// SecretsSource is a Source that also holds SDS secrets; its dump (nil:
// no secrets configured) ends /config_dump as in Envoy.
type SecretsSource interface {
	SecretsDump() *adminv3.SecretsConfigDump
}

// ConfigDump builds the dump of the source's accepted configuration.
func ConfigDump(src Source, started time.Time, includeEDS bool) (*adminv3.ConfigDump, error) {
	snap := src.Config()
	parts := []proto.Message{
		&adminv3.BootstrapConfigDump{Bootstrap: src.Bootstrap(), LastUpdated: timestamppb.New(started)},
		clustersDump(snap),
	}
	if includeEDS {
		parts = append(parts, endpointsDump(snap))
	}
	parts = append(parts, listenersDump(snap), routesDump(snap))
	if sec, ok := src.(SecretsSource); ok {
		if d := sec.SecretsDump(); d != nil {
			parts = append(parts, d)
		}
	}
	out := &adminv3.ConfigDump{}
	for _, p := range parts {
		a, err := anypb.New(p)
		if err != nil {
			return nil, err
		}
		out.Configs = append(out.Configs, a)
	}
	return out, nil
}

func clustersDump(s *xdsclient.Snapshot) *adminv3.ClustersConfigDump {
	d := &adminv3.ClustersConfigDump{VersionInfo: s.Versions[xdsclient.ClusterType]}
	for _, name := range sortedNames(s.Clusters) {
		r := s.Clusters[name]
		d.DynamicActiveClusters = append(d.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: r.Version, Cluster: mustAny(r.Message), LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	return d
}

func endpointsDump(s *xdsclient.Snapshot) *adminv3.EndpointsConfigDump {
	d := &adminv3.EndpointsConfigDump{}
	for _, name := range sortedNames(s.Endpoints) {
		r := s.Endpoints[name]
		d.DynamicEndpointConfigs = append(d.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: r.Version, EndpointConfig: mustAny(r.Message), LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	return d
}

func listenersDump(s *xdsclient.Snapshot) *adminv3.ListenersConfigDump {
	d := &adminv3.ListenersConfigDump{VersionInfo: s.Versions[xdsclient.ListenerType]}
	for _, name := range sortedNames(s.Listeners) {
		r := s.Listeners[name]
		d.DynamicListeners = append(d.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: mustAny(r.Message), LastUpdated: timestamppb.New(r.LastUpdated),
			},
		})
	}
	return d
}

func routesDump(s *xdsclient.Snapshot) *adminv3.RoutesConfigDump {
	d := &adminv3.RoutesConfigDump{}
	for _, name := range sortedNames(s.Routes) {
		r := s.Routes[name]
		d.DynamicRouteConfigs = append(d.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: r.Version, RouteConfig: mustAny(r.Message), LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	return d
}

// mustAny wraps an accepted resource; these always marshal (they were
// unmarshalled from the wire).
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}
