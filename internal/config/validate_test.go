package config

import (
	"strings"
	"testing"
)

func istioDoc(kind, spec string) string {
	group := "networking.istio.io/v1"
	if kind == "PeerAuthentication" || kind == "AuthorizationPolicy" || kind == "RequestAuthentication" {
		group = "security.istio.io/v1"
	}
	return "apiVersion: " + group + "\nkind: " + kind + "\nmetadata: {name: x}\nspec:\n" + spec
}

func TestValidate(t *testing.T) {
	const okRoute = "  - route:\n    - destination: {host: reviews}\n"
	tests := []struct {
		name    string
		input   string
		wantErr string // "" means valid
	}{
		// Gateway
		{"gateway ok", istioDoc("Gateway", "  servers:\n  - port: {number: 80, protocol: HTTP, name: http}\n    hosts: ['*', 'bookinfo/*.example.com']\n"), ""},
		{"gateway without servers", istioDoc("Gateway", "  selector: {istio: ingressgateway}\n"), "spec.servers: a Gateway must have at least one server"},
		{"gateway port out of range", istioDoc("Gateway", "  servers:\n  - port: {number: 70000, protocol: HTTP}\n    hosts: ['*']\n"), "spec.servers[0].port.number: port number 70000 is out of range 1-65535"},
		{"gateway bad protocol", istioDoc("Gateway", "  servers:\n  - port: {number: 80, protocol: HTTTP}\n    hosts: ['*']\n"), `spec.servers[0].port.protocol: invalid protocol "HTTTP"`},
		{"gateway missing protocol", istioDoc("Gateway", "  servers:\n  - port: {number: 80}\n    hosts: ['*']\n"), "spec.servers[0].port.protocol: protocol is required"},
		{"gateway without hosts", istioDoc("Gateway", "  servers:\n  - port: {number: 80, protocol: HTTP}\n"), "spec.servers[0].hosts: a server must have at least one host"},
		{"gateway bad host", istioDoc("Gateway", "  servers:\n  - port: {number: 80, protocol: HTTP}\n    hosts: ['foo.*.com']\n"), `spec.servers[0].hosts[0]: invalid host "foo.*.com"`},
		{"gateway HTTPS without tls", istioDoc("Gateway", "  servers:\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n"), "spec.servers[0].tls: a server with protocol HTTPS must have TLS settings"},
		{"gateway SIMPLE without credential", istioDoc("Gateway", "  servers:\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE}\n"), "TLS mode SIMPLE needs credentialName"},

		// VirtualService
		{"vs ok", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n"+okRoute), ""},
		{"delegate vs without hosts", istioDoc("VirtualService", "  http:\n"+okRoute), ""},
		{"delegate vs with gateways", istioDoc("VirtualService", "  gateways: [gw]\n  http:\n"+okRoute), "spec.gateways: delegate virtual service must have no gateways specified"},
		{"wildcard host on the mesh", istioDoc("VirtualService", "  hosts: ['*']\n  http:\n"+okRoute), "wildcard host * is not allowed for virtual services bound to the mesh gateway"},
		{"vs without routes", istioDoc("VirtualService", "  hosts: [reviews]\n"), "spec: a VirtualService needs http, tcp or tls routes"},
		{"route without action", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - match:\n    - uri: {prefix: /}\n"), "spec.http[0]: an HTTP route needs one of route, redirect, directResponse or delegate"},
		{"route and redirect", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - redirect: {uri: /x}\n    route:\n    - destination: {host: reviews}\n"), "spec.http[0]: an HTTP route can have only one of"},
		{"weights are relative", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 40\n"), ""},
		{"weights adding up to 0", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n    - destination: {host: reviews, subset: v3}\n"), "spec.http[0].route: total destination weight = 0"},
		{"weights adding up to 100", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 50\n"), ""},
		{"single destination weight is free", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 30\n"), ""},
		{"empty uri match", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - match:\n    - uri: {}\n    route:\n    - destination: {host: reviews}\n"), "spec.http[0].match[0].uri: exactly one of exact, prefix or regex must be set"},
		{"empty header match means presence", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - match:\n    - headers: {end-user: {}}\n    route:\n    - destination: {host: reviews}\n"), ""},
		{"header names are lowercase", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - match:\n    - headers: {End-User: {exact: jason}}\n    route:\n    - destination: {host: reviews}\n"), `spec.http[0].match[0].headers[End-User]: header name "End-User" must be lowercase`},
		{"bad header regex", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - match:\n    - headers: {cookie: {regex: '*jason'}}\n    route:\n    - destination: {host: reviews}\n"), `spec.http[0].match[0].headers[cookie].regex: invalid regex "*jason"`},
		{"bad subset name", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: V_1}\n"), `spec.http[0].route[0].destination.subset: invalid value "V_1"`},
		{"unknown retry policy", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 3, retryOn: '5xx,gateway-eror'}\n"), `spec.http[0].retries.retryOn: unknown retry policy "gateway-eror" (did you mean "gateway-error"?)`},
		{"timeout below 1ms", istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    timeout: 0s\n"), "spec.http[0].timeout: duration 0s is shorter than the minimum of 1ms"},
		{"fault percentage", istioDoc("VirtualService", "  hosts: [ratings]\n  http:\n  - fault:\n      abort: {httpStatus: 500, percentage: {value: 120}}\n    route:\n    - destination: {host: ratings}\n"), "spec.http[0].fault.abort.percentage: percentage 120 must be between 0 and 100"},
		{"tcp route weights", istioDoc("VirtualService", "  hosts: [db]\n  tcp:\n  - route:\n    - destination: {host: db, subset: a}\n      weight: 10\n    - destination: {host: db, subset: b}\n      weight: 0\n"), ""},
		{"tls route without sni", istioDoc("VirtualService", "  hosts: [db]\n  tls:\n  - match:\n    - port: 443\n    route:\n    - destination: {host: db}\n"), "spec.tls[0].match[0].sniHosts: a TLS match must have at least one SNI host"},

		// DestinationRule
		{"dr ok", istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n"), ""},
		{"dr without host", istioDoc("DestinationRule", "  subsets:\n  - name: v1\n"), "spec.host: required field is missing"},
		{"dr duplicate subset", istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - name: v1\n  - name: v1\n"), `spec.subsets[1].name: duplicate subset name "v1" (also spec.subsets[0])`},
		{"dr empty subset name", istioDoc("DestinationRule", "  host: reviews\n  subsets:\n  - labels: {version: v1}\n"), "spec.subsets[0].name: required field is missing"},
		{"dr max ejection percent", istioDoc("DestinationRule", "  host: reviews\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 101}\n"), "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 101 must be between 0 and 100"},

		// ServiceEntry
		{"se ok", istioDoc("ServiceEntry", "  hosts: [api.example.com]\n  ports:\n  - {number: 443, name: https, protocol: TLS}\n  resolution: DNS\n  location: MESH_EXTERNAL\n"), ""},
		{"se without hosts", istioDoc("ServiceEntry", "  ports:\n  - {number: 443, name: https}\n"), "spec.hosts: Required value: service entry must have at least one host"},
		{"se without ports", istioDoc("ServiceEntry", "  hosts: [api.example.com]\n"), ""},
		{"se port without name", istioDoc("ServiceEntry", "  hosts: [api.example.com]\n  ports:\n  - {number: 443}\n"), "spec.ports[0].name: Required value"},
		{"se static without endpoints", istioDoc("ServiceEntry", "  hosts: [db.internal]\n  ports:\n  - {number: 5432, name: tcp}\n  resolution: STATIC\n"), ""},
		{"se static endpoint must be an IP", istioDoc("ServiceEntry", "  hosts: [db.internal]\n  ports:\n  - {number: 5432, name: tcp}\n  resolution: STATIC\n  endpoints:\n  - address: db.example.com\n"), `spec.endpoints[0].address: invalid address "db.example.com": want an IP address`},

		// WorkloadEntry
		{"we ok", istioDoc("WorkloadEntry", "  address: 10.0.0.1\n  labels: {app: vm}\n"), ""},
		{"we without address", istioDoc("WorkloadEntry", "  labels: {app: vm}\n"), "spec.address: Address is required"},
		{"we with only a network", istioDoc("WorkloadEntry", "  network: net2\n"), ""},

		// Security
		{"custom authz without rules", istioDoc("AuthorizationPolicy", "  action: CUSTOM\n  provider: {name: opa}\n"), "spec.rules: CUSTOM action without `rules` is meaningless"},
		{"custom authz without provider", istioDoc("AuthorizationPolicy", "  action: CUSTOM\n  rules: [{}]\n"), "spec.provider.name: `provider.name` must not be empty"},
		{"custom authz", istioDoc("AuthorizationPolicy", "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]\n"), ""},
		{"port-level mtls needs selector", istioDoc("PeerAuthentication", "  portLevelMtls:\n    8080: {mode: DISABLE}\n"), "spec.portLevelMtls: portLevelMtls requires selector"},

		// Kubernetes
		{"deployment ok", deployment("app: reviews", "app: reviews", "name: reviews\n        image: reviews:v1"), ""},
		{"deployment selector mismatch", deployment("app: reviews", "app: ratings", "name: reviews\n        image: reviews:v1"), "spec.template.metadata.labels: `selector` does not match template `labels`"},
		{"deployment container without name", deployment("app: reviews", "app: reviews", "image: reviews:v1"), "spec.template.spec.containers[0].name: required field is missing"},
		{"service port names", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - {port: 80}\n  - {port: 443}\n", "spec.ports[0].name: required when a Service has more than one port"},
		{"bad object name", "apiVersion: v1\nkind: Service\nmetadata: {name: My_Service}\nspec: {}\n", `metadata.name: invalid name "My_Service"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadString(t, tt.input, "")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("expected error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error does not contain\n  %s\ngot:\n  %v", tt.wantErr, err)
			}
		})
	}
}

func deployment(selector, labels, container string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector:\n    matchLabels: {" + selector +
		"}\n  template:\n    metadata:\n      labels: {" + labels + "}\n    spec:\n      containers:\n      - " + container + "\n"
}

func TestValidateWarnings(t *testing.T) {
	input := istioDoc("VirtualService", "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n"+
		"  - match:\n    - headers: {end-user: {exact: jason}}\n    route:\n    - destination: {host: reviews, subset: v2}\n")
	_, warns, err := loadString(t, input, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), "VirtualService/x spec.http[1]: this route can never be used: spec.http[0] matches every request before it") {
		t.Fatalf("warnings = %v", warns)
	}
}

func TestValidateNamespaceRules(t *testing.T) {
	objs, _, err := loadString(t, gw("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	o := objs[0]
	o.Meta.Namespace = ""
	if errs := Validate(o); len(errs) != 1 || !strings.Contains(errs[0].Error(), "metadata.namespace: required for namespaced kind Gateway") {
		t.Errorf("errs = %v", errs)
	}
	o.Meta.Namespace = "Bad_NS"
	if errs := Validate(o); len(errs) != 1 || !strings.Contains(errs[0].Error(), `metadata.namespace: invalid value "Bad_NS"`) {
		t.Errorf("errs = %v", errs)
	}
}
