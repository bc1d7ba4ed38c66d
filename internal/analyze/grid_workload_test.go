package analyze

import "testing"

func TestGridInjection(t *testing.T) {
	runGrid(t, []gridCase{{
		name:  "istioInjection",
		codes: []string{"IST0102", "IST0103", "IST0123"},
		yaml: `apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: disabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar}
---
apiVersion: v1
kind: Namespace
metadata: {name: canary, labels: {istio.io/rev: canary}}
---
apiVersion: v1
kind: Namespace
metadata: {name: busted, labels: {istio-injection: enabled, istio.io/rev: canary}}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {name: injectedpod, namespace: default}
spec: {containers: [{name: app, image: a}, {name: istio-proxy, image: skein}]}
---
apiVersion: v1
kind: Pod
metadata: {name: noninjectedpod, namespace: default}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: optedout, namespace: default, labels: {sidecar.istio.io/inject: "false"}}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: notinjectedns, namespace: foo}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: revpod, namespace: canary}
spec: {containers: [{name: app, image: a}]}
`,
		want: []string{
			"IST0102 Namespace bar",
			"IST0103 Pod default/noninjectedpod",
			"IST0103 Pod canary/revpod",
			"IST0123 Namespace busted",
		},
	}})
}

func TestGridPortNames(t *testing.T) {
	svc := func(ns, name, ports string) string {
		return "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  selector: {app: x}\n  ports: " + ports + "\n"
	}
	runGrid(t, []gridCase{
		{
			name:  "portNameNotFollowConvention",
			codes: []string{"IST0118"},
			yaml: svc("my-namespace1", "my-service1", "[{port: 8080}]") + svc("my-namespace1", "my-service1b", "[{name: foo, port: 8081}]") +
				svc("my-namespace2", "my-service2", "[{name: httpx-a, port: 80}, {name: http-b, port: 81}]"),
			want: []string{
				"IST0118 Service my-namespace1/my-service1",
				"IST0118 Service my-namespace1/my-service1b",
				"IST0118 Service my-namespace2/my-service2",
			},
		},
		{
			name:  "namedPort",
			codes: []string{"IST0118"},
			yaml: svc("a", "s1", "[{name: http, port: 80}, {name: grpc-web-x, port: 81}, {name: tcp-db, port: 82}]") +
				svc("a", "s2", "[{name: web, port: 80, appProtocol: http}, {name: dns, port: 53, protocol: UDP}]"),
		},
		{
			name:  "unnamedPortInSystemNamespace",
			codes: []string{"IST0118"},
			yaml:  svc("kube-system", "kube-dns", "[{port: 53}]") + svc("istio-system", "istiod", "[{port: 15010}]"),
		},
	})
	m := analyzeYAML(t, svc("a", "s", "[{name: web, port: 80, targetPort: 8080}]"))
	if len(m) != 1 || m[0].Text() != "Port name web (port: 80, targetPort: 8080) doesn't follow the naming convention of Istio port." {
		t.Errorf("IST0118 text: %v", m)
	}
}

func TestGridDeployments(t *testing.T) {
	deploy := func(ns, name, app, extra string) string {
		return "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  selector: {matchLabels: {app: " + app + "}}\n  template:\n    metadata: {labels: {app: " + app + "}}\n    spec:\n" + extra +
			"      containers: [{name: app, image: a}]\n"
	}
	svc := func(ns, name, app, ports string) string {
		return "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n  selector: {app: " + app + "}\n  ports: " + ports + "\n"
	}
	runGrid(t, []gridCase{
		{
			name:  "serviceMultipleDeployments",
			codes: []string{"IST0116", "IST0137"},
			yaml: deploy("bookinfo", "multiple-svc-multiple-prot", "a", "") +
				svc("bookinfo", "a-http", "a", "[{name: http, port: 9080}]") + svc("bookinfo", "a-tcp", "a", "[{name: tcp, port: 9080}]") +
				deploy("bookinfo", "multiple-without-port", "b", "") +
				svc("bookinfo", "b-http", "b", "[{name: http, port: 9080}]") + svc("bookinfo", "b-none", "b", "[{port: 9080}]") +
				deploy("bookinfo", "conflicting-ports", "c", "") +
				svc("bookinfo", "c-1", "c", "[{name: http, port: 80, targetPort: 8080}]") + svc("bookinfo", "c-2", "c", "[{name: http, port: 81, targetPort: 8080}]") +
				deploy("bookinfo", "fine", "d", "") +
				svc("bookinfo", "d-1", "d", "[{name: http, port: 80}]") + svc("bookinfo", "d-2", "d", "[{name: http-alt, port: 80}]"),
			want: []string{
				"IST0116 Deployment bookinfo/multiple-svc-multiple-prot",
				"IST0116 Deployment bookinfo/multiple-without-port",
				"IST0137 Deployment bookinfo/conflicting-ports",
			},
		},
		{
			name:  "deploymentMultiServicesInDifferentNamespace",
			codes: []string{"IST0116", "IST0137"},
			yaml:  deploy("a", "d", "x", "") + svc("a", "s1", "x", "[{name: http, port: 80}]") + svc("b", "s2", "x", "[{name: tcp, port: 80}]"),
		},
		{
			name:  "serviceWithNoSelector",
			codes: []string{"IST0116", "IST0137"},
			yaml: deploy("a", "d", "x", "") + svc("a", "s1", "x", "[{name: http, port: 80}]") +
				"---\napiVersion: v1\nkind: Service\nmetadata: {name: s2, namespace: a}\nspec:\n  ports: [{name: tcp, port: 80}]\n",
		},
		{
			name:  "Application UID 1337",
			codes: []string{"IST0144"},
			yaml: `apiVersion: v1
kind: Pod
metadata: {name: pod-sec-uid, namespace: default}
spec:
  securityContext: {runAsUser: 1337}
  containers: [{name: app, image: a}]
---
apiVersion: v1
kind: Pod
metadata: {name: con-sec-uid, namespace: default}
spec:
  containers: [{name: app, image: a, securityContext: {runAsUser: 1337}}]
---
apiVersion: v1
kind: Pod
metadata: {name: proxy-uid, namespace: default}
spec:
  containers: [{name: app, image: a}, {name: istio-proxy, image: p, securityContext: {runAsUser: 1337}}]
` + deploy("default", "deploy-pod-sec-uid", "u1", "      securityContext: {runAsUser: 1337}\n") +
				"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: deploy-con-sec-uid, namespace: default}\nspec:\n  selector: {matchLabels: {app: u2}}\n  template:\n    metadata: {labels: {app: u2}}\n    spec:\n      containers: [{name: app, image: a, securityContext: {runAsUser: 1337}}]\n",
			want: []string{
				"IST0144 Pod default/pod-sec-uid",
				"IST0144 Pod default/con-sec-uid",
				"IST0144 Deployment default/deploy-pod-sec-uid",
				"IST0144 Deployment default/deploy-con-sec-uid",
			},
		},
	})
}

func TestGridAnnotations(t *testing.T) {
	runGrid(t, []gridCase{{
		name:  "misannotated",
		codes: []string{"IST0107", "IST0108", "IST0125", "IST0135"},
		yaml: `apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: default
  annotations: {networking.istio.io/exportTo: ".", sidecar.istio.io/bogus-annotation: "x", example.com/not-istio: "y"}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: invalid-annotations
  namespace: default
  annotations: {sidecar.istio.io/interceptionMode: "BOGUS", traffic.sidecar.istio.io/includeInboundPorts: "80,abc"}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: grafana-test
  namespace: default
  annotations: {networking.istio.io/exportTo: "."}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: fine
  namespace: default
  annotations: {sidecar.istio.io/proxyCPU: "100m", proxy.istio.io/config: "{}"}
spec: {containers: [{name: app, image: a}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fortio-deploy
  namespace: default
  annotations: {sidecar.istio.io/proxyCPU: "100m"}
spec:
  selector: {matchLabels: {app: fortio}}
  template:
    metadata:
      labels: {app: fortio}
      annotations: {sidecar.istio.io/inject: "true"}
    spec: {containers: [{name: app, image: a}]}
---
apiVersion: v1
kind: Namespace
metadata:
  name: staging
  labels: {istio-injection: enabled}
  annotations: {sidecar.istio.io/proxyCPU: "100m"}
`,
		want: []string{
			"IST0108 Service default/httpbin",
			"IST0125 Pod default/invalid-annotations",
			"IST0125 Pod default/invalid-annotations",
			"IST0107 Pod default/grafana-test",
			"IST0107 Deployment default/fortio-deploy",
			"IST0107 Namespace staging",
			"IST0135 Deployment default/fortio-deploy",
		},
	}})
}
