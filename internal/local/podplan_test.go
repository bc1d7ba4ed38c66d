package local

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func testPlanner() *planner {
	return &planner{
		Executable: "/opt/skein", DiscoveryAddr: "127.0.0.1:15010", IngressAddress: "127.0.0.1",
		HostEnv: []string{"PATH=/bin", "NO_PROXY=*"},
		LookPath: func(name string) (string, error) {
			if name == "python3" {
				return "/usr/bin/python3", nil
			}
			return "", errors.New("not found")
		},
		ConfigMaps: noConfigMaps,
	}
}

func envOf(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

func TestPlanSidecarPod(t *testing.T) {
	d := testDeployment()
	p := testPlanner().plan(d, podInstance{
		Name: "details-v1-h-abcde", UID: "uid", Mode: sidecarProxy,
		PodIP: netip.MustParseAddr("127.1.0.4"), AppIP: netip.MustParseAddr("127.2.0.4"),
		Dir: "/manifests", Created: time.Unix(100, 0),
	})
	if len(p.Containers) != 2 {
		t.Fatalf("want app + proxy containers, got %+v", p.Containers)
	}
	app, proxy := p.Containers[0], p.Containers[1]
	if app.Err != nil {
		t.Fatal(app.Err)
	}
	// "bookinfo" is not on PATH: the skein binary's built-in runs it.
	wantArgv := []string{"/opt/skein", "bookinfo", "details", "--name=details-v1-h-abcde"}
	if !slices.Equal(app.Argv, wantArgv) {
		t.Errorf("app argv = %q, want %q", app.Argv, wantArgv)
	}
	if app.Dir != "/manifests" || app.ProbeIP.String() != "127.2.0.4" || !slices.Equal(app.Ports, []int{9080}) {
		t.Errorf("app dir/probe = %q %s %v", app.Dir, app.ProbeIP, app.Ports)
	}
	if v, _ := envOf(app.Env, "HTTP_PROXY"); v != "http://127.1.0.4:15001" {
		t.Errorf("HTTP_PROXY = %q", v)
	}
	if _, ok := envOf(app.Env, "NO_PROXY"); ok {
		t.Errorf("NO_PROXY must be unset for a sidecar-injected app")
	}
	if v, _ := envOf(app.Env, "PATH"); v != "/bin" {
		t.Errorf("host PATH not inherited: %q", v)
	}

	wantProxy := []string{"/opt/skein", "proxy", "sidecar", "--discovery-address", "127.0.0.1:15010",
		"--pod-ip", "127.1.0.4", "--app-ip", "127.2.0.4", "--pod-name", "details-v1-h-abcde",
		"--namespace", "bookinfo", "--service-account", "bookinfo-details",
		"--labels", "app=details,pod-template-hash=" + p.TemplateHash +
			",security.istio.io/tlsMode=istio,service.istio.io/canonical-name=details,service.istio.io/canonical-revision=v1,version=v1",
		"--workload-name", "details-v1", "--admin-port", "15000"}
	if !proxy.IsProxy || !slices.Equal(proxy.Argv, wantProxy) {
		t.Errorf("proxy argv =\n %q\nwant\n %q", proxy.Argv, wantProxy)
	}
	if _, ok := envOf(proxy.Env, "HTTP_PROXY"); ok {
		t.Errorf("the proxy itself must not get HTTP_PROXY")
	}

	pod := p.Pod
	if names := containerNames(pod.Spec.Containers); !slices.Equal(names, []string{"details", "istio-proxy"}) {
		t.Errorf("registered containers = %v", names)
	}
	if pod.Labels[labelPodTemplateHash] != p.TemplateHash || pod.Annotations[annotationRunner] == "" ||
		!strings.Contains(pod.Annotations[annotationSidecarStatus], "istio-proxy") {
		t.Errorf("labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Name != "details-v1-"+p.TemplateHash {
		t.Errorf("owner = %+v", pod.OwnerReferences)
	}
	// The Deployment's own template must not be modified by planning.
	if _, ok := d.Spec.Template.Labels[labelPodTemplateHash]; ok {
		t.Errorf("plan modified the Deployment's template labels")
	}
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func TestPlanGatewayPod(t *testing.T) {
	objs := systemManifests(false)
	d, ok := objs[len(objs)-1].Spec.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("last system manifest is %T, want a Deployment", objs[len(objs)-1].Spec)
	}
	p := testPlanner().plan(d, podInstance{Name: "gw", Mode: gatewayProxy, PodIP: netip.MustParseAddr("127.1.0.9")})
	if len(p.Containers) != 1 || !p.Containers[0].IsProxy {
		t.Fatalf("gateway pod runs only the proxy, got %+v", p.Containers)
	}
	argv := strings.Join(p.Containers[0].Argv, " ")
	if !strings.HasPrefix(argv, "/opt/skein proxy router --bind-address 127.0.0.1 --discovery-address 127.0.0.1:15010 --pod-ip 127.1.0.9 --pod-name gw --namespace istio-system --service-account istio-ingressgateway-service-account") {
		t.Errorf("router argv = %s", argv)
	}
	if strings.Contains(argv, "--app-ip") || strings.Contains(argv, "tlsMode") {
		t.Errorf("a gateway has no app IP and no sidecar TLS mode: %s", argv)
	}
	if names := containerNames(p.Pod.Spec.Containers); !slices.Equal(names, []string{"istio-proxy"}) {
		t.Errorf("registered containers = %v", names)
	}

	// Another gateway (not istio: ingressgateway) binds its own pod IP.
	d.Spec.Template.Labels = map[string]string{"app": "egress", "istio": "egressgateway"}
	p = testPlanner().plan(d, podInstance{Name: "eg", Mode: gatewayProxy, PodIP: netip.MustParseAddr("127.1.0.10")})
	if got := p.Containers[0].Argv[3:5]; !slices.Equal(got, []string{"--bind-address", "127.1.0.10"}) {
		t.Errorf("egress gateway bind = %v", got)
	}
}

func TestPlanContainerErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *corev1.Container)
		want   string
	}{
		{"no command", func(c *corev1.Container) { c.Command = nil }, `container "details" has no command`},
		{"unknown program", func(c *corev1.Container) { c.Command = []string{"nosuchprog"} }, `executable "nosuchprog" not found in $PATH and not a built-in`},
		{"bad env", func(c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nope"}}}}
		}, "unsupported fieldPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDeployment()
			tt.change(&d.Spec.Template.Spec.Containers[0])
			p := testPlanner().plan(d, podInstance{Name: "n", Mode: noProxy, PodIP: netip.MustParseAddr("127.1.0.1")})
			if err := p.Containers[0].Err; err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// PATH lookups win over built-ins; paths are used as written.
	d := testDeployment()
	d.Spec.Template.Spec.Containers[0].Command = []string{"python3", "app.py"}
	p := testPlanner().plan(d, podInstance{Name: "n", PodIP: netip.MustParseAddr("127.1.0.1")})
	if got := p.Containers[0].Argv; !slices.Equal(got[:2], []string{"/usr/bin/python3", "app.py"}) {
		t.Errorf("argv = %q", got)
	}
	d.Spec.Template.Spec.Containers[0].Command = []string{"./bin/app"}
	p = testPlanner().plan(d, podInstance{Name: "n", PodIP: netip.MustParseAddr("127.1.0.1")})
	if got := p.Containers[0].Argv[0]; got != "./bin/app" {
		t.Errorf("argv[0] = %q", got)
	}
	if p.Containers[0].ProbeIP.String() != "127.1.0.1" {
		t.Errorf("without a sidecar readiness is probed on the pod IP, got %s", p.Containers[0].ProbeIP)
	}
}
