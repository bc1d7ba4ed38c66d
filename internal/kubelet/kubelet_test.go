package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func testKubelet(t *testing.T) *Kubelet {
	t.Helper()
	k, err := New(Options{
		Executable: "/opt/skein", NodeName: "skein-test", LogDir: t.TempDir(),
		HostEnv: []string{"PATH=/bin", "NO_PROXY=*", "HTTP_PROXY=http://corp:3128"},
		LookPath: func(name string) (string, error) {
			if name == "sleep" {
				return "/bin/sleep", nil
			}
			return "", errors.New("not found")
		},
		Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// injectedPod is a Bookinfo pod as the API server stores it after the
// injector ran: an app container and the istio-proxy container with the
// projected token mounted.
func injectedPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "details-v1-7d4d9b-x2x4k", Namespace: "bookinfo", UID: "uid-1",
			Labels:      map[string]string{"app": "details", "version": "v1"},
			Annotations: map[string]string{"sidecar.istio.io/status": "{}"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "bookinfo-details",
			NodeName:           "skein-test",
			Containers: []corev1.Container{
				{
					Name: "details", Image: "skein/bookinfo:latest", Command: []string{"bookinfo", "details"},
					Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
					Env: []corev1.EnvVar{
						{Name: "MY_IP", ValueFrom: fieldRef("status.podIP")},
						{Name: "MY_VERSION", ValueFrom: fieldRef("metadata.labels['version']")},
					},
				},
				{
					Name: "istio-proxy", Image: "docker.io/skein/skein:1.0", Command: []string{"skein"},
					Args: []string{"proxy", "sidecar", "--pod-name", "$(POD_NAME)", "--token-file", "/var/run/secrets/tokens/istio-token", "--labels=$(UNDEFINED)"},
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
						{Name: "POD_IP", ValueFrom: fieldRef("status.podIP")},
						{Name: "SERVICE_ACCOUNT", ValueFrom: fieldRef("spec.serviceAccountName")},
					},
					VolumeMounts: []corev1.VolumeMount{{Name: "istio-token", MountPath: "/var/run/secrets/tokens"}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)},
					}},
				},
			},
		},
	}
}

func TestKubeletPlansInjectedPod(t *testing.T) {
	k := testKubelet(t)
	pod := injectedPod()
	podIP, appIP := netip.MustParseAddr("127.3.0.5"), netip.MustParseAddr("127.4.0.5")
	res := PodResources{Volumes: map[string]string{"istio-token": "/data/pods/uid-1/istio-token"}, Dir: "/data/pods/uid-1"}
	p := k.plan(pod, kubeProxyMode(pod), podIP, appIP, res)
	if p.Mode != sidecarProxy || len(p.Containers) != 2 {
		t.Fatalf("mode %v, %d containers; want a sidecar pod with 2", p.Mode, len(p.Containers))
	}
	app, proxy := p.Containers[0], p.Containers[1]
	if app.Err != nil || proxy.Err != nil {
		t.Fatalf("errors: app %v, proxy %v", app.Err, proxy.Err)
	}
	if want := []string{"/opt/skein", "bookinfo", "details"}; !slices.Equal(app.Argv, want) {
		t.Errorf("app argv %q, want %q", app.Argv, want)
	}
	for name, want := range map[string]string{
		"MY_IP": "127.3.0.5", "MY_VERSION": "v1", "SKEIN_APP_IP": "127.4.0.5", "POD_IP": "127.3.0.5",
		"HTTP_PROXY": "http://127.3.0.5:15001", "SERVICE_ACCOUNT": "bookinfo-details",
	} {
		if v, _ := envOf(app.Env, name); v != want {
			t.Errorf("app env %s = %q, want %q", name, v, want)
		}
	}
	if _, ok := envOf(app.Env, "NO_PROXY"); ok {
		t.Error("a sidecar app must not inherit NO_PROXY")
	}
	if app.ProbeIP != appIP || app.Dir != "/data/pods/uid-1" {
		t.Errorf("app probes %s in %s; want %s in the pod dir", app.ProbeIP, app.Dir, appIP)
	}
	wantProxy := []string{"/opt/skein", "proxy", "sidecar", "--pod-name", "details-v1-7d4d9b-x2x4k",
		"--token-file", "/data/pods/uid-1/istio-token/istio-token", "--labels=$(UNDEFINED)"}
	if !proxy.IsProxy || !slices.Equal(proxy.Argv, wantProxy) {
		t.Errorf("proxy argv\n %q\nwant\n %q", proxy.Argv, wantProxy)
	}
	if _, ok := envOf(proxy.Env, "HTTP_PROXY"); ok {
		t.Error("the proxy must get no HTTP_PROXY, neither the pod's nor the host's")
	}
	if v, _ := envOf(proxy.Env, "SKEIN_APP_IP"); v != "127.4.0.5" {
		t.Errorf("proxy SKEIN_APP_IP = %q, want the app IP", v)
	}
	if proxy.HTTPProbe == nil || *proxy.HTTPProbe != (HTTPProbe{Port: 15021, Path: "/healthz/ready"}) || proxy.ProbeIP != podIP {
		t.Errorf("proxy probe %+v on %s", proxy.HTTPProbe, proxy.ProbeIP)
	}
}

func TestKubeletContainerImages(t *testing.T) {
	tests := []struct {
		name      string
		c         corev1.Container
		wantArgv  []string
		wantEnv   map[string]string
		wantError string // substring; reason ErrImagePull when wantImage
		wantImage bool
	}{
		{name: "skein/bookinfo default CMD", c: corev1.Container{Name: "a", Image: "skein/bookinfo"},
			wantArgv: []string{"/opt/skein", "bookinfo", "productpage"}},
		{name: "skein/bookinfo args only", c: corev1.Container{Name: "a", Image: "skein/bookinfo:v1", Args: []string{"ratings"}},
			wantArgv: []string{"/opt/skein", "bookinfo", "ratings"}},
		{name: "Istio's reviews-v3 image", c: corev1.Container{Name: "a", Image: "docker.io/istio/examples-bookinfo-reviews-v3:1.20.2"},
			wantArgv: []string{"/opt/skein", "bookinfo", "reviews"},
			wantEnv:  map[string]string{"STAR_COLOR": "red", "ENABLE_RATINGS": "true", "SERVICE_VERSION": "v3"}},
		{name: "pod env overrides image env", c: corev1.Container{Name: "a", Image: "istio/examples-bookinfo-reviews-v2@sha256:abc",
			Env: []corev1.EnvVar{{Name: "STAR_COLOR", Value: "blue"}}},
			wantArgv: []string{"/opt/skein", "bookinfo", "reviews"}, wantEnv: map[string]string{"STAR_COLOR": "blue"}},
		{name: "absolute path of a built-in inside its image", c: corev1.Container{Name: "a", Image: "skein/bookinfo", Command: []string{"/usr/local/bin/bookinfo", "details"}},
			wantArgv: []string{"/opt/skein", "bookinfo", "details"}},
		{name: "other image with a host command", c: corev1.Container{Name: "a", Image: "curlimages/curl", Command: []string{"sleep", "$(SECONDS)"},
			Env: []corev1.EnvVar{{Name: "SECONDS", Value: "3600"}}},
			wantArgv: []string{"/bin/sleep", "3600"}},
		{name: "other image without command", c: corev1.Container{Name: "web", Image: "nginx:1.27"},
			wantError: `image "nginx:1.27" cannot run on a skein node`, wantImage: true},
		{name: "unknown command", c: corev1.Container{Name: "a", Image: "busybox", Command: []string{"frobnicate"}},
			wantError: `executable "frobnicate" not found`},
		{name: "bad probe port", c: corev1.Container{Name: "a", Image: "skein/bookinfo", ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}},
			wantError: `readinessProbe.httpGet.port: no container port named "http"`},
	}
	k := testKubelet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{Containers: []corev1.Container{tt.c}}}
			p := k.plan(pod, noProxy, netip.MustParseAddr("127.3.0.9"), netip.Addr{}, PodResources{ConfigMaps: noConfigMaps})
			c := p.Containers[0]
			if tt.wantError != "" {
				if c.Err == nil || !strings.Contains(c.Err.Error(), tt.wantError) {
					t.Fatalf("error %v, want one containing %q", c.Err, tt.wantError)
				}
				if got := configReason(c.Err); (got == ReasonImage) != tt.wantImage {
					t.Errorf("reason %s, image error wanted: %v", got, tt.wantImage)
				}
				return
			}
			if c.Err != nil {
				t.Fatal(c.Err)
			}
			if !slices.Equal(c.Argv, tt.wantArgv) {
				t.Errorf("argv %q, want %q", c.Argv, tt.wantArgv)
			}
			for n, want := range tt.wantEnv {
				if v, _ := envOf(c.Env, n); v != want {
					t.Errorf("env %s = %q, want %q", n, v, want)
				}
			}
			if v, _ := envOf(c.Env, "HTTP_PROXY"); v != "http://corp:3128" {
				t.Errorf("a pod without sidecar keeps the host's HTTP_PROXY, got %q", v)
			}
		})
	}
}

func TestRewritePaths(t *testing.T) {
	mounts := mountMap(&corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "tokens", MountPath: "/var/run/secrets/tokens"},
		{Name: "inner", MountPath: "/var/run/secrets/tokens/inner/"},
		{Name: "missing", MountPath: "/etc/missing"},
	}}, map[string]string{"tokens": "/h/tokens", "inner": "/h/inner"})
	tests := map[string]string{
		"/var/run/secrets/tokens/istio-token":              "/h/tokens/istio-token",
		"--token-file=/var/run/secrets/tokens/istio-token": "--token-file=/h/tokens/istio-token",
		"/var/run/secrets/tokens":                          "/h/tokens",
		"/var/run/secrets/tokens/inner/x":                  "/h/inner/x",
		"/var/run/secrets/tokensmith":                      "/var/run/secrets/tokensmith",
		"/etc/missing/file":                                "/etc/missing/file",
		"relative/var/run/secrets/tokens/x":                "relative/var/run/secrets/tokens/x",
		"a=b":                                              "a=b",
	}
	for in, want := range tests {
		if got := rewritePaths(in, mounts); got != want {
			t.Errorf("rewritePaths(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodStatusFromState(t *testing.T) {
	started := time.Unix(1000, 0)
	plan := &Plan{PodIP: netip.MustParseAddr("127.3.0.2"), Created: started, Pod: &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "skein/bookinfo"}, {Name: "istio-proxy", Image: "skein/skein"}}}}}
	tests := []struct {
		name       string
		st         PodState
		phase      corev1.PodPhase
		ready      corev1.ConditionStatus
		app        string // state of container "app": running, waiting:<reason>, terminated:<code>
		lastExited bool
	}{
		{name: "all running and ready", st: PodState{Ready: true, Containers: []ContainerState{
			{Name: "app", Running: true, Ready: true, StartedAt: started}, {Name: "istio-proxy", Running: true, Ready: true}}},
			phase: corev1.PodRunning, ready: corev1.ConditionTrue, app: "running"},
		{name: "crash loop", st: PodState{Containers: []ContainerState{
			{Name: "app", Reason: ReasonCrashLoop, RestartCount: 3, LastExit: "exit status 2", LastExitCode: 2, LastExitAt: started}, {Name: "istio-proxy", Running: true, Ready: true}}},
			phase: corev1.PodRunning, ready: corev1.ConditionFalse, app: "waiting:CrashLoopBackOff", lastExited: true},
		{name: "image cannot run", st: PodState{Containers: []ContainerState{
			{Name: "app", Reason: ReasonImage, Message: `image "nginx" cannot run`}, {Name: "istio-proxy", Running: true, Ready: true}}},
			phase: corev1.PodPending, ready: corev1.ConditionFalse, app: "waiting:ErrImagePull"},
		{name: "completed", st: PodState{Containers: []ContainerState{
			{Name: "app", Terminated: true, LastExitAt: started}, {Name: "istio-proxy", Terminated: true, LastExitAt: started}}},
			phase: corev1.PodSucceeded, ready: corev1.ConditionFalse, app: "terminated:0"},
		{name: "failed", st: PodState{Containers: []ContainerState{
			{Name: "app", Terminated: true, LastExitCode: 1, LastExitAt: started}, {Name: "istio-proxy", Terminated: true, LastExitAt: started}}},
			phase: corev1.PodFailed, ready: corev1.ConditionFalse, app: "terminated:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := PodStatus(plan, tt.st)
			if s.Phase != tt.phase || s.PodIP != "127.3.0.2" || s.HostIP != "127.0.0.1" || s.StartTime == nil {
				t.Errorf("phase %s ip %s host %s start %v", s.Phase, s.PodIP, s.HostIP, s.StartTime)
			}
			for _, c := range s.Conditions {
				if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != tt.ready {
					t.Errorf("condition %s = %s, want %s", c.Type, c.Status, tt.ready)
				}
			}
			cs := s.ContainerStatuses[0]
			got := "?"
			switch {
			case cs.State.Running != nil:
				got = "running"
			case cs.State.Waiting != nil:
				got = "waiting:" + cs.State.Waiting.Reason
			case cs.State.Terminated != nil:
				got = fmt.Sprintf("terminated:%d", cs.State.Terminated.ExitCode)
			}
			if got != tt.app || cs.Image != "skein/bookinfo" {
				t.Errorf("app state %s image %s, want %s", got, cs.Image, tt.app)
			}
			if (cs.LastTerminationState.Terminated != nil) != tt.lastExited {
				t.Errorf("lastState %+v, want set: %v", cs.LastTerminationState, tt.lastExited)
			}
		})
	}
}

// TestKubeletRunsPod runs a real process (the test binary's "listen"
// helper) as a pod without sidecar, and stops it.
func TestKubeletRunsPod(t *testing.T) {
	k, err := New(Options{LogDir: t.TempDir(), HostEnv: os.Environ(), Logger: discardLogger(),
		Probe: ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "web", Image: "example/helper", Command: []string{os.Args[0]},
			Ports: []corev1.ContainerPort{{ContainerPort: 18080}},
			Env:   []corev1.EnvVar{{Name: helperEnv, Value: "listen"}, {Name: "PORT", Value: "18080"}}}}}}
	changed := make(chan struct{}, 1)
	rp, err := k.Run(pod, PodResources{ConfigMaps: noConfigMaps, Dir: t.TempDir()}, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rp.PodIP().String(), "127.3.") || rp.AppIP().IsValid() || rp.Proxy() != "" {
		t.Errorf("pod IP %s app IP %s proxy %q; want a 127.3 address, no app IP, no proxy", rp.PodIP(), rp.AppIP(), rp.Proxy())
	}
	waitFor(t, 10*time.Second, "the pod to be ready", func() bool {
		s, _ := rp.Status()
		return s.Phase == corev1.PodRunning && s.ContainerStatuses[0].Ready
	})
	resp, err := http.Get("http://" + rp.PodIP().String() + ":18080/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "web-1" {
		t.Errorf("app answered %q, want its POD_NAME web-1", body)
	}
	pid := rp.Pids()["web"]
	if pid == 0 {
		t.Fatal("no pid for the running container")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rp.Stop(ctx)
	if !processGone(pid) {
		t.Errorf("process %d still runs after Stop", pid)
	}
}

func TestKubeletRestartPolicy(t *testing.T) {
	tests := []struct {
		policy   corev1.RestartPolicy
		helper   string
		phase    corev1.PodPhase
		exitCode int32
	}{
		{corev1.RestartPolicyNever, "crash", corev1.PodFailed, 3},
		{corev1.RestartPolicyOnFailure, "term", "", 0}, // still running: only a failure would end it
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			k, err := New(Options{LogDir: t.TempDir(), HostEnv: os.Environ(), Logger: discardLogger(),
				Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
				Probe:   ProbeConfig{Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "default"}, Spec: corev1.PodSpec{
				RestartPolicy: tt.policy,
				Containers: []corev1.Container{{Name: "c", Image: "x", Command: []string{os.Args[0]},
					Env: []corev1.EnvVar{{Name: helperEnv, Value: tt.helper}}}}}}
			rp, err := k.Run(pod, PodResources{ConfigMaps: noConfigMaps, Dir: t.TempDir()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer rp.Stop(context.Background())
			if tt.phase == "" {
				time.Sleep(200 * time.Millisecond)
				if s, _ := rp.Status(); s.Phase != corev1.PodRunning || s.ContainerStatuses[0].RestartCount != 0 {
					t.Errorf("phase %s restarts %d; want Running, 0", s.Phase, s.ContainerStatuses[0].RestartCount)
				}
				return
			}
			waitFor(t, 5*time.Second, "the pod to end", func() bool { s, _ := rp.Status(); return s.Phase == tt.phase })
			s, _ := rp.Status()
			term := s.ContainerStatuses[0].State.Terminated
			if term == nil || term.ExitCode != tt.exitCode || s.ContainerStatuses[0].RestartCount != 0 {
				t.Errorf("state %+v restarts %d; want terminated with %d, never restarted", s.ContainerStatuses[0].State, s.ContainerStatuses[0].RestartCount, tt.exitCode)
			}
		})
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
