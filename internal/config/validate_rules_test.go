package config

import (
	"strings"
	"testing"
)

// doc is one document of apiVersion/kind with spec (indented two spaces).
func doc(apiVersion, kind, spec string) string {
	return "apiVersion: " + apiVersion + "\nkind: " + kind + "\nmetadata: {name: x}\nspec:\n" + spec
}

const (
	sec  = "security.istio.io/v1"
	net  = "networking.istio.io/v1"
	tel  = "telemetry.istio.io/v1"
	ext  = "extensions.istio.io/v1alpha1"
	gapi = "gateway.networking.k8s.io/v1"
)

// ruleCase: want "" is valid; otherwise an error containing want.
// warn, when set, must be among the warnings.
type ruleCase struct {
	name, input, want, warn string
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := loadString(t, tc.input, "")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not contain\n  %s\ngot:\n  %v", tc.want, err)
			}
			if tc.warn != "" {
				for _, w := range warns {
					if strings.Contains(w.String(), tc.warn) {
						return
					}
				}
				t.Errorf("no warning containing %q in %v", tc.warn, warns)
			}
		})
	}
}

func TestAuthorizationPolicyRules(t *testing.T) {
	ap := func(spec string) string { return doc(sec, "AuthorizationPolicy", spec) }
	runRules(t, []ruleCase{
		{"serviceAccounts with namespaces", ap("  rules:\n  - from:\n    - source: {serviceAccounts: [ns/sa], namespaces: [ns]}\n"), "spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals, found at rule 0", ""},
		{"serviceAccounts with principals", ap("  rules:\n  - from:\n    - source: {notServiceAccounts: [ns/sa], principals: [p]}\n"), "cannot set serviceAccounts with namespaces or principals", ""},
		{"serviceAccounts alone", ap("  rules:\n  - from:\n    - source: {serviceAccounts: [ns/sa]}\n"), "", ""},
		{"DENY without rules", ap("  action: DENY\n"), "spec.rules: DENY action without `rules` is meaningless", ""},
		{"DENY with an empty rule", ap("  action: DENY\n  rules: [{}]\n"), "", ""},
		{"ALLOW without rules denies all", ap("  action: ALLOW\n"), "", ""},
		{"CUSTOM stored", ap("  action: CUSTOM\n  provider: {name: ext-authz}\n  rules:\n  - to:\n    - operation: {paths: [/admin]}\n"), "", ""},
		{"CUSTOM without rules", ap("  action: CUSTOM\n  provider: {name: ext-authz}\n"), "CUSTOM action without `rules` is meaningless", ""},
		{"CUSTOM with principals", ap("  action: CUSTOM\n  provider: {name: ext-authz}\n  rules:\n  - from:\n    - source: {principals: [a]}\n"), "From.Principals is currently not supported with CUSTOM action", ""},
		{"provider with ALLOW", ap("  provider: {name: ext-authz}\n  rules: [{}]\n"), "`provider` must not be with non CUSTOM action, found ALLOW", ""},
		{"empty source", ap("  rules:\n  - from:\n    - source: {}\n"), "`from.source` must not be empty, found at rule 0", ""},
		{"empty operation", ap("  rules:\n  - to:\n    - operation: {}\n"), "`to.operation` must not be empty, found at rule 0", ""},
		{"empty value", ap("  rules:\n  - to:\n    - operation: {paths: ['']}\n"), "spec.rules[0].to[0].operation.paths[0]: empty value not allowed in paths", ""},
		{"bad ipBlock", ap("  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/33]}\n"), "invalid IP address or CIDR range: 10.0.0.0/33", ""},
		{"bad port", ap("  rules:\n  - to:\n    - operation: {ports: ['http']}\n"), `invalid port "http"`, ""},
		{"condition without values", ap("  rules:\n  - when:\n    - key: request.headers[x]\n"), "at least one of `values` or `notValues` must be set for key request.headers[x]", ""},
		{"selector and targetRef", ap("  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n"), "only one of targetRefs or selector can be set", ""},
		{"DENY on HTTP attributes only warns", ap("  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [POST]}\n"), "", "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope"},
	})
}

func TestPeerAuthenticationRules(t *testing.T) {
	pa := func(spec string) string { return doc(sec, "PeerAuthentication", spec) }
	runRules(t, []ruleCase{
		{"empty portLevelMtls", pa("  selector: {matchLabels: {a: b}}\n  portLevelMtls: {}\n"), "spec.portLevelMtls in body should have at least 1 properties", ""},
		{"portLevelMtls without selector", pa("  portLevelMtls:\n    8080: {mode: DISABLE}\n"), "portLevelMtls requires selector", ""},
		{"port 0", pa("  selector: {matchLabels: {a: b}}\n  portLevelMtls:\n    0: {mode: DISABLE}\n"), "spec.portLevelMtls[0]: port must be between 1-65535", ""},
		{"port level ok", pa("  selector: {matchLabels: {a: b}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n"), "", ""},
		{"wildcard selector value", pa("  selector: {matchLabels: {a: 'b*'}}\n"), "wildcard not allowed in label value match", ""},
	})
}

func TestRequestAuthenticationRules(t *testing.T) {
	ra := func(spec string) string { return doc(sec, "RequestAuthentication", spec) }
	rule := func(fields string) string { return ra("  jwtRules:\n  - issuer: example\n" + fields) }
	runRules(t, []ruleCase{
		{"targetRef and targetRefs", ra("  targetRef: {kind: Service, name: a}\n  targetRefs:\n  - {kind: Service, name: b}\n"), "only one of targetRefs or selector can be set", ""},
		{"targetRef without name", ra("  targetRef: {kind: Service}\n"), "spec.targetRef.name: Required value", ""},
		{"targetRef in another namespace", ra("  targetRef: {kind: Service, name: a, namespace: b}\n"), "cross namespace referencing is not currently supported", ""},
		{"targetRef bad group", ra("  targetRef: {group: __, kind: Service, name: a}\n"), "spec.targetRef.group: group in body should match", ""},
		{"targetRef bad kind", ra("  targetRef: {kind: Serv_ice, name: a}\n"), "spec.targetRef.kind: kind in body should match", ""},
		{"empty audience", rule("    audiences: ['']\n"), "audiences[0] in body should be at least 1 chars long", ""},
		{"jwksUri without scheme", rule("    jwksUri: example.com/keys\n"), "url must have scheme", ""},
		{"fromHeaders without name", rule("    fromHeaders:\n    - prefix: 'Bearer '\n"), "spec.jwtRules[0].fromHeaders[0].name: Required value", ""},
		{"empty fromParams", rule("    fromParams: ['']\n"), "fromParams[0] in body should be at least 1 chars long", ""},
		{"empty fromCookies", rule("    fromCookies: ['']\n"), "fromCookies[0] in body should be at least 1 chars long", ""},
		{"empty claim", rule("    outputClaimToHeaders:\n    - {claim: '', header: h}\n"), "claim in body should be at least 1 chars long", ""},
		{"empty header", rule("    outputClaimToHeaders:\n    - {claim: c, header: ''}\n"), "header in body should be at least 1 chars long", ""},
		{"pseudo header", rule("    outputClaimToHeaders:\n    - {claim: c, header: ':authority'}\n"), "header in body should match", ""},
		{"empty spaceDelimitedClaims", rule("    spaceDelimitedClaims: ['']\n"), "spaceDelimitedClaims[0] in body should be at least 1 chars long", ""},
		{"presence", rule("    presence: OPTIONAL\n"), "", ""},
		{"bad presence", rule("    presence: MANDATORY\n"), "presence", ""},
		{"full rule", rule("    jwksUri: https://example.com/keys\n    audiences: [a]\n    fromHeaders:\n    - {name: x-jwt, prefix: 'Bearer '}\n    fromParams: [token]\n    fromCookies: [session]\n    outputClaimToHeaders:\n    - {claim: sub, header: x-sub}\n    timeout: 5s\n"), "", ""},
	})
}

func TestTelemetryRules(t *testing.T) {
	tm := func(spec string) string { return doc(tel, "Telemetry", spec) }
	runRules(t, []ruleCase{
		{"empty provider name", tm("  metrics:\n  - providers:\n    - name: ''\n"), "name in body should be at least 1 chars long", ""},
		{"empty customMetric", tm("  metrics:\n  - overrides:\n    - match: {customMetric: ''}\n"), "customMetric in body should be at least 1 chars long", ""},
		{"UPSERT without value", tm("  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {operation: UPSERT}\n"), "value must be set when operation is UPSERT", ""},
		{"REMOVE with value", tm("  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {operation: REMOVE, value: oops}\n"), "value must not be set when operation is REMOVE", ""},
		{"UPSERT with value", tm("  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {value: request.host}\n"), "", ""},
		{"sampling over 100", tm("  tracing:\n  - randomSamplingPercentage: 101\n"), "randomSamplingPercentage must be in range [0.0, 100.0]", ""},
	})
}

func TestServiceEntryRules(t *testing.T) {
	se := func(spec string) string { return doc(net, "ServiceEntry", spec) }
	const port = "  ports:\n  - {number: 80, name: http, protocol: HTTP}\n"
	runRules(t, []ruleCase{
		{"no spec", "apiVersion: " + net + "\nkind: ServiceEntry\nmetadata: {name: x}\n", "spec: Required value", ""},
		{"no ports", se("  hosts: [example.com]\n"), "", ""},
		{"partial wildcard host", se("  hosts: ['*x']\n"), "", ""},
		{"partial wildcard dash", se("  hosts: ['*-x.example.com']\n"), "", ""},
		{"wildcard in a later label", se("  hosts: ['a.*.com']\n"), `invalid host "a.*.com"`, ""},
		{"host *", se("  hosts: ['*']\n"), "hostname cannot be wildcard", ""},
		{"duplicate port number", se("  hosts: [example.com]\n  ports:\n  - {name: a, number: 1}\n  - {name: b, number: 1}\n"), "spec.ports[1].number: port number cannot be duplicated", ""},
		{"duplicate port name", se("  hosts: [example.com]\n  ports:\n  - {name: a, number: 1}\n  - {name: a, number: 2}\n"), "Duplicate value", ""},
		{"port out of range", se("  hosts: [example.com]\n  ports:\n  - {name: a, number: 65536}\n"), "port must be between 1-65535", ""},
		{"CIDR with DNS", se("  hosts: [example.com]\n  addresses: [1.2.3.4/16]\n  resolution: DNS\n" + port), "CIDR addresses are allowed only for NONE/STATIC resolution types", ""},
		{"CIDR with NONE", se("  hosts: [example.com]\n  addresses: [1.2.3.4/16]\n" + port), "", ""},
		{"NONE with endpoints", se("  hosts: [example.com]\n  endpoints:\n  - address: 1.2.3.4\n" + port), "NONE mode cannot set endpoints", ""},
		{"DNS_ROUND_ROBIN with two endpoints", se("  hosts: [example.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints:\n  - address: a.example.com\n  - address: b.example.com\n" + port), "DNS_ROUND_ROBIN mode cannot have multiple endpoints", ""},
		{"selector wildcard", se("  hosts: [example.com]\n  workloadSelector:\n    labels: {val: '*'}\n" + port), "wildcard is not supported in selector", ""},
		{"selector and endpoints", se("  hosts: [example.com]\n  resolution: STATIC\n  workloadSelector:\n    labels: {app: a}\n  endpoints:\n  - address: 1.2.3.4\n" + port), "only one of WorkloadSelector or Endpoints can be set", ""},
		{"STATIC endpoint must be an IP", se("  hosts: [example.com]\n  resolution: STATIC\n  endpoints:\n  - address: a.example.com\n" + port), `invalid address "a.example.com": want an IP address`, ""},
		{"endpoint port not in the entry", se("  hosts: [example.com]\n  resolution: STATIC\n  endpoints:\n  - address: 1.2.3.4\n    ports: {grpc: 8080}\n" + port), `endpoint port "grpc" is not defined by the service entry`, ""},
	})
}

func TestWorkloadEntryRules(t *testing.T) {
	we := func(spec string) string { return doc(net, "WorkloadEntry", spec) }
	runRules(t, []ruleCase{
		{"no spec", "apiVersion: " + net + "\nkind: WorkloadEntry\nmetadata: {name: x}\n", "spec: Required value", ""},
		{"no address", we("  labels: {app: a}\n"), "Address is required", ""},
		{"network only", we("  network: n1\n"), "", ""},
		{"FQDN", we("  address: example.com\n"), "", ""},
		{"UDS dir", we("  address: unix:///dir/\n"), "UDS may not be a dir", ""},
		{"UDS relative", we("  address: unix://relative\n"), "UDS must be an absolute path or abstract socket", ""},
		{"UDS abstract", we("  address: unix://@foo\n"), "", ""},
		{"UDS with ports", we("  address: unix://@foo\n  ports: {http: 80}\n"), "UDS may not include ports", ""},
		{"port out of range", we("  address: 1.1.1.1\n  ports: {http: 99999}\n"), "port must be between 1-65535", ""},
		{"bad port name", we("  address: 1.1.1.1\n  ports: {'@': 80}\n"), "spec.ports: Invalid value: port name must be valid", ""},
	})
}

func TestDestinationRuleWarmupRules(t *testing.T) {
	dr := func(warmup string) string {
		return doc(net, "DestinationRule", "  host: ratings\n  trafficPolicy:\n    loadBalancer:\n      warmup: {"+warmup+"}\n")
	}
	runRules(t, []ruleCase{
		{"ok", dr("duration: 300s, minimumPercent: 10, aggression: 2"), "", ""},
		{"minimumPercent over 100", dr("duration: 300s, minimumPercent: 150"), "spec.trafficPolicy.loadBalancer.warmup.minimumPercent: Invalid value", ""},
		{"no duration", dr("minimumPercent: 5"), "spec.trafficPolicy.loadBalancer.warmup.duration: Required value", ""},
		{"negative aggression", dr("duration: 300s, aggression: -0.1"), "spec.trafficPolicy.loadBalancer.warmup.aggression: Invalid value", ""},
	})
}

func TestEnvoyFilterWaypointRules(t *testing.T) {
	ef := func(match string) string {
		return doc("networking.istio.io/v1alpha3", "EnvoyFilter", "  configPatches:\n  - applyTo: HTTP_FILTER\n    match:\n"+match+"    patch: {operation: REMOVE}\n")
	}
	runRules(t, []ruleCase{
		{"waypoint match on a sidecar", ef("      context: SIDECAR_INBOUND\n      waypoint: {portNumber: 80}\n"), "spec.configPatches[0].match: only support waypointMatch when context is WAYPOINT", ""},
		{"WAYPOINT with a listener match", ef("      context: WAYPOINT\n      listener: {portNumber: 80}\n"), "only support waypointMatch when context is WAYPOINT", ""},
		{"waypoint port out of range", ef("      context: WAYPOINT\n      waypoint: {portNumber: 65536}\n"), "spec.configPatches[0].match.waypoint.portNumber: port must be between 1-65535", ""},
		{"waypoint ok", ef("      context: WAYPOINT\n      waypoint: {portNumber: 80}\n"), "", ""},
	})
}

func TestWasmPluginRules(t *testing.T) {
	wp := func(spec string) string { return doc(ext, "WasmPlugin", spec) }
	runRules(t, []ruleCase{
		{"ok", wp("  url: oci://ghcr.io/x/y:1\n  pluginName: p\n  phase: AUTHN\n"), "", ""},
		{"no scheme is an image", wp("  url: ghcr.io/x/y:1\n"), "", ""},
		{"null spec", "apiVersion: " + ext + "\nkind: WasmPlugin\nmetadata: {name: x}\nspec:\n", "spec: Required value", ""},
		{"empty url", wp("  url: ''\n"), "spec.url in body should be at least 1 chars long", ""},
		{"unparseable url", wp("  url: '#%blah$#@'\n"), "url must have schema one of", ""},
		{"unknown scheme", wp("  url: fake://example.com\n"), "url must have schema one of", ""},
		{"bad sha256", wp("  url: http://test\n  sha256: foo\n"), "spec.sha256 in body should match", ""},
		{"empty imagePullSecret", wp("  url: http://test\n  imagePullSecret: ''\n"), "spec.imagePullSecret in body should be at least 1 chars long", ""},
		{"empty pluginName", wp("  url: http://test\n  pluginName: ''\n"), "spec.pluginName in body should be at least 1 chars long", ""},
		{"duplicate env", wp("  url: http://test\n  vmConfig:\n    env:\n    - name: a\n    - name: a\n"), "Duplicate value", ""},
		{"empty env name", wp("  url: http://test\n  vmConfig:\n    env:\n    - name: ''\n"), "spec.vmConfig.env[0].name in body should be at least 1 chars long", ""},
		{"value from HOST", wp("  url: http://test\n  vmConfig:\n    env:\n    - {name: a, valueFrom: HOST, value: v}\n"), "value may only be set when valueFrom is INLINE", ""},
		{"port without number", wp("  url: http://test\n  match:\n  - ports:\n    - {}\n"), "spec.match[0].ports[0].number: Required value", ""},
		{"wildcard label value", wp("  url: http://test\n  selector:\n    matchLabels: {istio: 'bar*'}\n"), "wildcard not allowed in label value match", ""},
		{"wildcard label key", wp("  url: http://test\n  selector:\n    matchLabels: {'istio*': bar}\n"), "wildcard not allowed in label key match", ""},
	})
}

func TestProxyConfigAndWorkloadGroupRules(t *testing.T) {
	pc := func(spec string) string { return doc("networking.istio.io/v1beta1", "ProxyConfig", spec) }
	wg := func(spec string) string { return doc(net, "WorkloadGroup", spec) }
	runRules(t, []ruleCase{
		{"proxyconfig ok", pc("  concurrency: 2\n  environmentVariables: {A: b}\n  image: {imageType: distroless}\n"), "", ""},
		{"negative concurrency", pc("  concurrency: -1\n"), "spec.concurrency in body should be greater than or equal to 0", ""},
		{"empty selector key", pc("  selector:\n    matchLabels: {'': bar}\n"), "key must not be empty", ""},
		{"workloadgroup ok", wg("  metadata: {labels: {app: a}}\n  template: {serviceAccount: sa, ports: {http: 80}}\n  probe:\n    httpGet: {path: /ready, port: 80}\n"), "", ""},
		{"workloadgroup without spec", "apiVersion: " + net + "\nkind: WorkloadGroup\nmetadata: {name: x}\n", "spec: Required value", ""},
		{"probe port out of range", wg("  probe:\n    tcpSocket: {port: 65536}\n  template: {serviceAccount: sa}\n"), "spec.probe.tcpSocket.port: port must be between 1-65535", ""},
		{"probe header name", wg("  probe:\n    httpGet:\n      port: 80\n      httpHeaders:\n      - name: '**'\n  template: {}\n"), "spec.probe.httpGet.httpHeaders[0].name in body should match", ""},
	})
}

func TestStoredOnlyKinds(t *testing.T) {
	runRules(t, []ruleCase{
		{"gateway api gateway", doc(gapi, "Gateway", "  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n"), "", "Skein does not program Gateway API resources yet"},
		{"gateway without class", doc(gapi, "Gateway", "  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n"), "spec.gatewayClassName: Required value", ""},
		{"duplicate listener", doc(gapi, "Gateway", "  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n  - {name: http, port: 81, protocol: HTTP}\n"), "spec.listeners[1].name: Duplicate value", ""},
		{"unknown field", doc(gapi, "HTTPRoute", "  parentRefs:\n  - name: gw\n  rulez: []\n"), `spec.rulez: unknown field "rulez" (did you mean "rules"?)`, ""},
		{"httproute", doc(gapi, "HTTPRoute", "  parentRefs:\n  - name: gw\n  rules:\n  - backendRefs:\n    - {name: reviews, port: 9080}\n"), "", "does not program"},
		{"tcproute v1alpha2", doc("gateway.networking.k8s.io/v1alpha2", "TCPRoute", "  parentRefs:\n  - name: gw\n  rules:\n  - backendRefs:\n    - {name: db, port: 5432}\n"), "", ""},
		{"networkpolicy", doc("networking.k8s.io/v1", "NetworkPolicy", "  podSelector: {}\n  policyTypes: [Egress]\n"), "", "not enforced in local mode"},
		{"ingress", doc("networking.k8s.io/v1", "Ingress", "  ingressClassName: istio\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n"), "", ""},
		{"endpoints", "apiVersion: v1\nkind: Endpoints\nmetadata: {name: x}\nsubsets:\n- addresses: [{ip: 10.0.0.1}]\n  ports: [{port: 80}]\n", "", ""},
	})
}
