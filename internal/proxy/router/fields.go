package router

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// supportedFields lists, per message the router reads, the fields it
// implements or carries. Any other field that is set is a Compile error:
// the proxy must NACK what it would otherwise silently ignore. Reflection
// runs at Compile time only.
var supportedFields = map[protoreflect.FullName]map[protoreflect.Name]bool{}

func support(m proto.Message, fields ...protoreflect.Name) {
	desc := m.ProtoReflect().Descriptor()
	set := make(map[protoreflect.Name]bool, len(fields))
	for _, f := range fields {
		if desc.Fields().ByName(f) == nil {
			panic(fmt.Sprintf("router: %s has no field %q", desc.FullName(), f))
		}
		set[f] = true
	}
	supportedFields[desc.FullName()] = set
}

func init() {
	support(&routev3.RouteConfiguration{}, "name", "virtual_hosts",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove",
		"most_specific_header_mutations_wins", "ignore_port_in_host_matching",
		"max_direct_response_body_size_bytes",
		// Envoy checks clusters exist when loading; cluster existence is
		// the caller's concern (Istio sets it false).
		"validate_clusters")
	support(&routev3.VirtualHost{}, "name", "domains", "routes",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config", "cors", "retry_policy", "include_request_attempt_count")
	support(&routev3.Route{}, "name", "match", "route", "redirect", "direct_response",
		"metadata", "decorator", "typed_per_filter_config",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove")
	support(&routev3.RouteMatch{}, "prefix", "path", "safe_regex", "path_separated_prefix",
		"case_sensitive", "headers", "query_parameters")
	support(&routev3.QueryParameterMatcher{}, "name", "string_match", "present_match")
	support(&matcherv3.RegexMatcher{}, "regex", "google_re2")
	support(&matcherv3.RegexMatchAndSubstitute{}, "pattern", "substitution")
	support(&routev3.RouteAction{}, "cluster", "weighted_clusters", "timeout",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "cluster_not_found_response_code",
		"retry_policy", "hash_policy", "request_mirror_policies", "max_stream_duration")
	support(&routev3.WeightedCluster{}, "clusters", "total_weight")
	support(&routev3.WeightedCluster_ClusterWeight{}, "name", "weight", "host_rewrite_literal",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove", "typed_per_filter_config")
	support(&routev3.RedirectAction{}, "scheme_redirect", "https_redirect", "host_redirect",
		"port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "strip_query", "response_code")
	support(&routev3.DirectResponseAction{}, "status", "body")
	support(&corev3.DataSource{}, "inline_string", "inline_bytes")
	support(&corev3.HeaderValueOption{}, "header", "append", "append_action", "keep_empty_value")
	support(&corev3.HeaderValue{}, "key", "value", "raw_value")
}

// checkFields fails on the first set field (in field order) that m's kind
// does not support, and on fields unknown to our protos. what names the
// message in the error: `unsupported match field "grpc"`.
func checkFields(m proto.Message, what string) error {
	msg := m.ProtoReflect()
	desc := msg.Descriptor()
	allowed, known := supportedFields[desc.FullName()]
	if !known {
		panic(fmt.Sprintf("router: no supported-field list for %s", desc.FullName()))
	}
	fields := desc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if msg.Has(fd) && !allowed[fd.Name()] {
			return fmt.Errorf("unsupported %s field %q", what, fd.Name())
		}
	}
	if len(msg.GetUnknown()) > 0 {
		return fmt.Errorf("%s has fields unknown to this proxy", what)
	}
	return nil
}
