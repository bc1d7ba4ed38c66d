package registry_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configstore"
	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/registry"
)

func build(t *testing.T, yaml string) *registry.Snapshot {
	t.Helper()
	objs, _, err := config.LoadReader("test.yaml", strings.NewReader(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	store := configstore.OpenMemory()
	if _, err := store.Apply(objs); err != nil {
		t.Fatal(err)
	}
	return registry.Build(store.Snapshot(), "cluster.local")
}

const meshYAML = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http-web, port: 80, targetPort: web-port}
  - {name: grpc, port: 9000, targetPort: 9001}
  - {name: tcp-db, port: 5432}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web, version: v1}}
spec:
  serviceAccountName: web-sa
  containers:
  - name: web
    image: web
    ports: [{name: web-port, containerPort: 8080}]
  - {name: istio-proxy, image: auto}
status:
  phase: Running
  podIP: 127.1.0.1
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web, version: v2}}
spec:
  containers:
  - name: web
    image: web
    ports: [{name: web-port, containerPort: 8080}]
status:
  phase: Running
  podIP: 127.1.0.2
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-other-ns, namespace: other, labels: {app: web}}
spec:
  containers: [{name: web, image: web}]
status:
  phase: Running
  podIP: 127.1.0.3
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-vm, namespace: shop}
spec:
  address: 10.0.0.9
  labels: {app: web, version: vm}
  serviceAccount: vm-sa
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: shop}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: shop}
spec:
  hosts: [legacy.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP, targetPort: 8001}]
  endpoints:
  - {address: 127.5.0.1, labels: {version: a}}
  - {address: 127.5.0.2, ports: {http: 9009}, weight: 3}
`

func TestServicesAndEndpoints(t *testing.T) {
	reg := build(t, meshYAML)
	var hosts []string
	for _, s := range reg.Services() {
		hosts = append(hosts, s.Hostname)
	}
	if got, want := strings.Join(hosts, ","), "api.example.com,legacy.internal,web.shop.svc.cluster.local"; got != want {
		t.Fatalf("services = %s, want %s", got, want)
	}
	web := reg.Service("web.shop.svc.cluster.local")
	protos := map[uint32]model.Protocol{}
	for _, p := range web.Ports {
		protos[p.Port] = p.Protocol
	}
	if protos[80] != model.ProtocolHTTP || protos[9000] != model.ProtocolGRPC || protos[5432] != model.ProtocolTCP {
		t.Errorf("port protocols = %v", protos)
	}

	tests := []struct {
		host  string
		port  uint32
		want  []string // address:port of ready endpoints
		sa    string
		sidec bool
	}{
		{"web.shop.svc.cluster.local", 80, []string{"10.0.0.9:80", "127.1.0.1:8080"}, "", false},
		{"web.shop.svc.cluster.local", 9000, []string{"10.0.0.9:9001", "127.1.0.1:9001"}, "", false},
		{"legacy.internal", 8000, []string{"127.5.0.1:8001", "127.5.0.2:9009"}, "", false},
		{"api.example.com", 443, []string{"api.example.com:443"}, "", false},
	}
	for _, tc := range tests {
		var got []string
		for _, ep := range reg.Endpoints(tc.host, tc.port) {
			got = append(got, ep.Address+":"+strconv.Itoa(int(ep.Port)))
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s:%d endpoints = %v, want %v", tc.host, tc.port, got, tc.want)
		}
	}
	eps := reg.Endpoints("web.shop.svc.cluster.local", 80)
	if eps[1].ServiceAccount != "web-sa" || !eps[1].HasSidecar || eps[0].ServiceAccount != "vm-sa" {
		t.Errorf("endpoint identity = %+v / %+v", eps[0], eps[1])
	}
	if w := reg.Endpoints("legacy.internal", 8000)[1].Weight; w != 3 {
		t.Errorf("weight = %d, want 3", w)
	}
	// Not-ready pods are not endpoints, but are still instances of their IP.
	if n := len(reg.InstancesAt("127.1.0.2")); n != 3 { // ports 80, 9000 and 5432
		t.Errorf("InstancesAt(not ready pod) = %d, want 3", n)
	}
	if reg.Service("api.example.com").Resolution != model.DNSLB || !reg.Service("api.example.com").MeshExternal {
		t.Errorf("api.example.com: want DNS, mesh external")
	}
}
