package analyze

import "testing"

const workloads = `apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: default, labels: {app: reviews, version: v1}}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ratings-1, namespace: default, labels: {app: ratings}}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-1, namespace: httpbin, labels: {app: httpbin, version: v1}}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: httpbin-empty, labels: {istio-injection: enabled}}
`

func TestGridSidecars(t *testing.T) {
	sc := func(ns, name, sel string) string {
		s := "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n"
		if sel != "" {
			s += "  workloadSelector: {labels: {" + sel + "}}\n"
		}
		return s + "  egress: [{hosts: [\"./*\"]}]\n"
	}
	runGrid(t, []gridCase{
		{
			name:  "sidecarDefaultSelector",
			codes: []string{"IST0111"},
			yaml:  workloads + sc("ns1", "no-conflict", "") + sc("ns2", "has-conflict-1", "") + sc("ns2", "has-conflict-2", ""),
			want:  []string{"IST0111 Sidecar ns2/has-conflict-1", "IST0111 Sidecar ns2/has-conflict-2"},
		},
		{
			name:  "sidecarSelector",
			codes: []string{"IST0101", "IST0110"},
			yaml: workloads + sc("default", "maps-to-nonexistent", "app: bogus") + sc("other", "maps-to-different-ns", "app: reviews") +
				sc("default", "dupe-1", "app: reviews") + sc("default", "dupe-2", "app: reviews") +
				sc("default", "overlap-1", "app: ratings") + sc("httpbin", "ok", "app: httpbin"),
			want: []string{
				"IST0101 Sidecar default/maps-to-nonexistent",
				"IST0101 Sidecar other/maps-to-different-ns",
				"IST0110 Sidecar default/dupe-1",
				"IST0110 Sidecar default/dupe-2",
			},
		},
		{
			name:  "sidecarOverlap",
			codes: []string{"IST0110"},
			yaml:  workloads + sc("default", "overlap-1", "app: reviews") + sc("default", "overlap-2", "version: v1"),
			want:  []string{"IST0110 Sidecar default/overlap-1", "IST0110 Sidecar default/overlap-2"},
		},
	})
}

func TestGridTelemetry(t *testing.T) {
	tel := func(ns, name, sel, body string) string {
		s := "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n"
		if sel != "" {
			s += "  selector: {matchLabels: {" + sel + "}}\n"
		}
		if body == "" {
			body = "  accessLogging: [{providers: [{name: envoy}]}]\n"
		}
		return s + body
	}
	runGrid(t, []gridCase{
		{
			name:  "telemetrySelector",
			codes: []string{"IST0101", "IST0159"},
			yaml: workloads + tel("default", "maps-to-nonexistent", "app: bogus", "") + tel("other", "maps-to-different-ns", "app: reviews", "") +
				tel("default", "dupe-1", "app: reviews", "") + tel("default", "dupe-2", "app: reviews", "") + tel("default", "ok", "app: ratings", ""),
			want: []string{
				"IST0101 Telemetry default/maps-to-nonexistent",
				"IST0101 Telemetry other/maps-to-different-ns",
				"IST0159 Telemetry default/dupe-1",
				"IST0159 Telemetry default/dupe-2",
			},
		},
		{
			name:  "telemetryDefaultSelector",
			codes: []string{"IST0160"},
			yaml:  workloads + tel("ns1", "no-conflict", "", "") + tel("ns2", "has-conflict-1", "", "") + tel("ns2", "has-conflict-2", "", ""),
			want:  []string{"IST0160 Telemetry ns2/has-conflict-1", "IST0160 Telemetry ns2/has-conflict-2"},
		},
		{
			name:  "Analyze invalid telemetry",
			codes: []string{"IST0157"},
			yaml:  tel("istio-system", "mesh-default", "", "  accessLogging: [{}]\n"),
			want:  []string{"IST0157 Telemetry istio-system/mesh-default"},
		},
		{
			name:  "telemetry disabling a provider is valid",
			codes: []string{"IST0157"},
			yaml:  tel("istio-system", "mesh-default", "", "  accessLogging: [{disabled: true}]\n"),
		},
	})
}

func TestGridAuthorizationPolicies(t *testing.T) {
	ap := func(ns, name, body string) string {
		return "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + body
	}
	runGrid(t, []gridCase{{
		name:  "authorizationpolicies",
		codes: []string{"IST0101", "IST0127"},
		yaml: workloads +
			ap("istio-system", "meshwide-httpbin-v1", "  selector: {matchLabels: {app: httpbin, version: v2}}\n") +
			ap("istio-system", "meshwide-httpbin-ok", "  selector: {matchLabels: {app: httpbin}}\n") +
			ap("httpbin-empty", "httpbin-empty-namespace-wide", "  {}\n") +
			ap("httpbin", "httpbin-nopods", "  selector: {matchLabels: {app: bogus}}\n") +
			ap("httpbin", "httpbin-namespace-wide", "  {}\n") +
			ap("httpbin", "httpbin-bogus-ns", "  rules:\n  - from:\n    - source: {namespaces: [bogus-ns, httpbin, \"http*\", \"*-empty\", \"bogus-*\"]}\n") +
			ap("httpbin", "httpbin-bogus-not-ns", "  rules:\n  - from:\n    - source: {notNamespaces: [bogus-ns, \"*\", \"*-bogus\"]}\n"),
		want: []string{
			"IST0127 AuthorizationPolicy istio-system/meshwide-httpbin-v1",
			"IST0127 AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide",
			"IST0127 AuthorizationPolicy httpbin/httpbin-nopods",
			"IST0101 AuthorizationPolicy httpbin/httpbin-bogus-ns",
			"IST0101 AuthorizationPolicy httpbin/httpbin-bogus-ns",
			"IST0101 AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
			"IST0101 AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
		},
	}})
}

func TestGridDestinationRuleCaCertificates(t *testing.T) {
	dr := func(name, body string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name + ", namespace: default}\nspec:\n  host: db.example.com\n" + body
	}
	cases := []gridCase{
		{"simple at destination level", nil, dr("db-tls", "  trafficPolicy: {tls: {mode: SIMPLE}}\n"), []string{"IST0128 DestinationRule default/db-tls"}},
		{"mutual at destination level", nil, dr("db-mtls", "  trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}\n"), []string{"IST0128 DestinationRule default/db-mtls"}},
		{"simple at port level", nil, dr("db-tls", "  trafficPolicy:\n    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]\n"), []string{"IST0129 DestinationRule default/db-tls"}},
		{"credentialName without selector", nil, dr("db-tls", "  trafficPolicy: {tls: {mode: SIMPLE, credentialName: c}}\n"), []string{"IST0128 DestinationRule default/db-tls"}},
		{"credentialName with selector", nil, dr("db-tls", "  workloadSelector: {matchLabels: {app: gw}}\n  trafficPolicy: {tls: {mode: SIMPLE, credentialName: c}}\n"), nil},
		{"port-level credentialName without selector", nil, dr("db-tls", "  trafficPolicy:\n    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE, credentialName: c}}]\n"), []string{"IST0129 DestinationRule default/db-tls"}},
		{"port-level credentialName with selector", nil, dr("db-tls", "  workloadSelector: {matchLabels: {app: gw}}\n  trafficPolicy:\n    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE, credentialName: c}}]\n"), nil},
		{"mutual at port level", nil, dr("db-mtls", "  trafficPolicy:\n    portLevelSettings: [{port: {number: 443}, tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}]\n"), []string{"IST0129 DestinationRule default/db-mtls"}},
		{"mutual at destination, simple at port", nil, dr("db-mtls", "  trafficPolicy:\n    tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}\n    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]\n"),
			[]string{"IST0128 DestinationRule default/db-mtls", "IST0129 DestinationRule default/db-mtls"}},
		{"with CA certificates", nil, dr("db-tls", "  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /ca}\n    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE, caCertificates: /ca}}]\n"), nil},
		{"ISTIO_MUTUAL needs no CA", nil, dr("db-tls", "  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"), nil},
	}
	for i := range cases {
		cases[i].codes = []string{"IST0128", "IST0129"}
	}
	runGrid(t, cases)
}

func TestGridServiceEntries(t *testing.T) {
	se := func(name, body string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + ", namespace: default}\nspec:\n  hosts: [" + name + ".example.com]\n  resolution: DNS\n" + body
	}
	runGrid(t, []gridCase{
		{
			name:  "missing Addresses and Protocol in Service Entry",
			codes: []string{"IST0134"},
			yaml: se("service-entry-test-01", "  addresses: [10.0.0.1]\n  ports: [{number: 3306, name: tcp, protocol: TCP}]\n") +
				se("service-entry-test-02", "  ports: [{number: 80, name: http, protocol: HTTP}]\n") +
				se("service-entry-test-03", "  ports: [{number: 3306, name: tcp, protocol: TCP}]\n") +
				se("service-entry-test-04", "  ports: [{number: 3306, name: db}]\n") +
				se("service-entry-test-05", "  ports: [{number: 443, name: https, protocol: HTTPS}]\n"),
			want: []string{"IST0134 ServiceEntry default/service-entry-test-03", "IST0134 ServiceEntry default/service-entry-test-04"},
		},
		{
			name:  "ServiceEntry Addresses Required Lowercase Protocol",
			codes: []string{"IST0134"},
			yaml:  se("address-missing-lowercase", "  ports: [{number: 3306, name: tcp, protocol: tcp}]\n"),
			want:  []string{"IST0134 ServiceEntry default/address-missing-lowercase"},
		},
		{
			name:  "WorkloadEntry service account",
			codes: []string{"IST0101"},
			yaml: `apiVersion: v1
kind: ServiceAccount
metadata: {name: vm, namespace: default}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-ok, namespace: default}
spec: {address: 10.0.0.2, serviceAccount: vm}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-bogus, namespace: default}
spec: {address: 10.0.0.3, serviceAccount: bogus}
`,
			want: []string{"IST0101 WorkloadEntry default/vm-bogus"},
		},
	})
}

func TestGridSchemaValidation(t *testing.T) {
	runGrid(t, []gridCase{{
		name:  "schema",
		codes: []string{"IST0106"},
		yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: empty-route, namespace: default}
spec:
  hosts: [a]
  http: [{route: []}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: unknown-field, namespace: default}
spec:
  host: a
  bogusField: 1
---
apiVersion: example.com/v1
kind: Unknown
metadata: {name: skipped}
`,
		want: []string{"IST0106 VirtualService default/empty-route", "IST0106 DestinationRule default/unknown-field"},
	}})
}

func TestGridMTLSConflicts(t *testing.T) {
	pa := func(ns, name, mode string) string {
		return "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  mtls: {mode: " + mode + "}\n"
	}
	dr := func(ns, name, host, mode string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  host: " + host + "\n  trafficPolicy: {tls: {mode: " + mode + "}}\n"
	}
	runGrid(t, []gridCase{{
		name:  "mtls",
		codes: []string{"IST0113"},
		yaml: pa("istio-system", "default", "STRICT") + pa("legacy", "default", "DISABLE") +
			dr("default", "off-under-strict", "reviews", "DISABLE") +
			dr("default", "on-under-strict", "ratings", "ISTIO_MUTUAL") +
			dr("default", "on-under-disable", "old.legacy.svc.cluster.local", "ISTIO_MUTUAL") +
			dr("default", "off-under-disable", "older.legacy.svc.cluster.local", "DISABLE") +
			dr("default", "external", "api.example.com", "DISABLE"),
		want: []string{"IST0113 DestinationRule default/off-under-strict", "IST0113 DestinationRule default/on-under-disable"},
	}})
	m := analyzeYAML(t, pa("istio-system", "default", "STRICT")+dr("default", "x", "reviews", "DISABLE"))
	want := `A DestinationRule and Policy are in conflict with regards to mTLS for host reviews.default.svc.cluster.local. The DestinationRule "default/x" specifies that mTLS must be false but the Policy object "istio-system/default" specifies STRICT.`
	if len(m) != 1 || m[0].Text() != want {
		t.Errorf("got %v", m)
	}
}
