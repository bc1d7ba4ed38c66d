package kubelet

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func testIdentity(sidecar bool) Identity {
	id := Identity{
		Name: "details-v1-abc-xyz", Namespace: "bookinfo", UID: "u-1", ServiceAccount: "bookinfo-details",
		NodeName: "local", HostIP: "127.0.0.1",
		Labels:      map[string]string{"app": "details", "version": "v1"},
		Annotations: map[string]string{"team": "books"},
		PodIP:       netip.MustParseAddr("127.1.0.7"),
		Sidecar:     sidecar,
	}
	if sidecar {
		id.AppIP = netip.MustParseAddr("127.2.0.7")
	}
	return id
}

func noConfigMaps(string, string) (map[string]string, bool, error) { return nil, false, nil }

func envMap(vars []EnvVar) map[string]string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

func TestRunnerEnv(t *testing.T) {
	with := envMap(RunnerEnv(testIdentity(true)))
	want := map[string]string{
		"POD_IP": "127.1.0.7", "POD_NAME": "details-v1-abc-xyz", "POD_NAMESPACE": "bookinfo",
		"SERVICE_ACCOUNT": "bookinfo-details", "SKEIN_APP_IP": "127.2.0.7",
		"HTTP_PROXY": "http://127.1.0.7:15001", "http_proxy": "http://127.1.0.7:15001",
	}
	if !reflect.DeepEqual(with, want) {
		t.Errorf("with sidecar:\n got %v\nwant %v", with, want)
	}
	without := envMap(RunnerEnv(testIdentity(false)))
	if without["SKEIN_APP_IP"] != "127.1.0.7" {
		t.Errorf("without sidecar the app listens on the pod IP, got SKEIN_APP_IP=%q", without["SKEIN_APP_IP"])
	}
	if _, ok := without["HTTP_PROXY"]; ok {
		t.Errorf("without sidecar HTTP_PROXY must not be set")
	}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func TestContainerEnv(t *testing.T) {
	yes := true
	configMaps := func(ns, name string) (map[string]string, bool, error) {
		if ns == "bookinfo" && name == "settings" {
			return map[string]string{"LEVEL": "debug", "COLOR": "red"}, true, nil
		}
		return nil, false, nil
	}
	c := &corev1.Container{
		EnvFrom: []corev1.EnvFromSource{
			{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &yes}},
		},
		Env: []corev1.EnvVar{
			{Name: "MY_POD_IP", ValueFrom: fieldRef("status.podIP")},
			{Name: "MY_NAME", ValueFrom: fieldRef("metadata.name")},
			{Name: "MY_NS", ValueFrom: fieldRef("metadata.namespace")},
			{Name: "MY_SA", ValueFrom: fieldRef("spec.serviceAccountName")},
			{Name: "MY_APP", ValueFrom: fieldRef("metadata.labels['app']")},
			{Name: "MY_TEAM", ValueFrom: fieldRef("metadata.annotations['team']")},
			{Name: "MY_HOST", ValueFrom: fieldRef("status.hostIP")},
			{Name: "LEVEL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "LEVEL"}}},
			{Name: "GONE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "NOPE", Optional: &yes}}},
			{Name: "LISTEN", Value: "$(SKEIN_APP_IP):$(PORT)"},
			{Name: "PORT", Value: "9080"},
			{Name: "URL", Value: "http://$(MY_POD_IP):$(PORT)/$(CFG_COLOR)"},
		},
	}
	vars, err := ContainerEnv(testIdentity(true), c, configMaps)
	if err != nil {
		t.Fatal(err)
	}
	got := envMap(vars)
	want := map[string]string{
		"MY_POD_IP": "127.1.0.7", "MY_NAME": "details-v1-abc-xyz", "MY_NS": "bookinfo",
		"MY_SA": "bookinfo-details", "MY_APP": "details", "MY_TEAM": "books", "MY_HOST": "127.0.0.1",
		"LEVEL": "debug", "CFG_LEVEL": "debug", "CFG_COLOR": "red",
		// PORT is declared after LISTEN, so it is not expanded there (Kubernetes order).
		"LISTEN": "127.2.0.7:$(PORT)",
		"URL":    "http://127.1.0.7:9080/red",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["GONE"]; ok {
		t.Errorf("an optional reference to a missing key must leave the variable undefined")
	}
	if got["POD_IP"] != "127.1.0.7" || got["HTTP_PROXY"] == "" {
		t.Errorf("runner variables missing: %v", got)
	}
}

func TestContainerEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  corev1.EnvVar
		want string
	}{
		{"bad fieldPath", corev1.EnvVar{Name: "X", ValueFrom: fieldRef("status.phase")}, `unsupported fieldPath "status.phase"`},
		{"missing configmap", corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}, `configmap "nope" not found in namespace "bookinfo"`},
		{"secret", corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}, "Secrets are not supported"},
		{"resource", corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}, "resourceFieldRef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ContainerEnv(testIdentity(false), &corev1.Container{Env: []corev1.EnvVar{tt.env}}, noConfigMaps)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "env X") {
				t.Errorf("err = %v, want it to name env X and contain %q", err, tt.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	host := []string{"PATH=/bin", "HOME=/home/me", "NO_PROXY=localhost", "no_proxy=localhost", "POD_IP=stale", "HTTP_PROXY=http://corp:3128"}
	defined := []EnvVar{{"POD_IP", "127.1.0.7"}, {"HTTP_PROXY", "http://127.1.0.7:15001"}, {"A", "1"}, {"A", "2"}}
	got := ProcessEnv(host, defined, SidecarDropEnv)
	want := []string{"PATH=/bin", "HOME=/home/me", "POD_IP=127.1.0.7", "HTTP_PROXY=http://127.1.0.7:15001", "A=2"}
	if !slices.Equal(got, want) {
		t.Errorf("ProcessEnv:\n got %q\nwant %q", got, want)
	}
}
