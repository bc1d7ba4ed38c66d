package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/skein-mesh/skein/internal/kubelet"
)

// logAgent is an agent whose informer store holds one pod (containers app
// and istio-proxy) with an istio-proxy log of the given content.
func logAgent(t *testing.T, log string) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	a := &Agent{opts: Options{NodeName: testNode, DataDir: dir}, log: quietLogger(), running: map[string]*podEntry{}}
	a.pods = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "bookinfo", Name: "productpage-v1-x"},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pods.Add(&unstructured.Unstructured{Object: obj}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "logs", "bookinfo", "productpage-v1-x", "istio-proxy.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	return a, path
}

func TestContainerLogs(t *testing.T) {
	a, _ := logAgent(t, "one\ntwo\nthree\n")
	srv := httptest.NewServer(a.kubeletHandler())
	defer srv.Close()
	for _, tc := range []struct {
		path     string
		wantCode int
		want     string
	}{
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy", 200, "one\ntwo\nthree\n"},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?tailLines=2", 200, "two\nthree\n"},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?tailLines=0", 200, ""},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?tailLines=10", 200, "one\ntwo\nthree\n"},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?limitBytes=5", 200, "one\nt"},
		{"/containerLogs/bookinfo/productpage-v1-x/app", 200, ""}, // not started yet
		{"/containerLogs/bookinfo/productpage-v1-x/nope", 400, "container nope is not valid for pod productpage-v1-x"},
		{"/containerLogs/bookinfo/other/app", 404, "pod bookinfo/other is not on node skein-test"},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?previous=true", 400, "previous is not supported"},
		{"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?tailLines=-1", 400, "tailLines"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode || (tc.wantCode == 200 && string(body) != tc.want) || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.wantCode, tc.want)
		}
	}
}

// TestContainerLogsFollow: with follow, lines written later arrive, and
// the stream ends once the pod no longer runs.
func TestContainerLogsFollow(t *testing.T) {
	a, path := logAgent(t, "first\n")
	a.running["bookinfo/productpage-v1-x"] = &podEntry{rp: &kubelet.RunningPod{}}
	srv := httptest.NewServer(a.kubeletHandler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/containerLogs/bookinfo/productpage-v1-x/istio-proxy?follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if l, err := r.ReadString('\n'); err != nil || l != "first\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("later\n")
	if l, err := r.ReadString('\n'); err != nil || l != "later\n" {
		t.Fatalf("followed line %q, %v", l, err)
	}
	a.mu.Lock()
	a.running["bookinfo/productpage-v1-x"].stopped = true
	a.mu.Unlock()
	f.WriteString("last words\n")
	f.Close()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "last words\n" {
		t.Errorf("after the pod stopped: %q, %v; want its last line and the end", rest, err)
	}
}

func TestSeekToTail(t *testing.T) {
	for _, tc := range []struct {
		content string
		n       int64
		want    string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\n\nc\n", 2, "\nc\n"},
		{strings.Repeat("x", 20000) + "\nlast\n", 1, "last\n"},
		{strings.Repeat("line\n", 5000), 2, "line\nline\n"},
	} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(tc.content)
		if err := seekToTail(f, tc.n); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if string(got) != tc.want {
			t.Errorf("tail %d of %.20q = %.40q, want %.40q", tc.n, tc.content, got, tc.want)
		}
	}
}

// TestKubeletAPIServesTLS: the API listens on the node's address over
// HTTPS, as the API server expects of a kubelet.
func TestKubeletAPIServesTLS(t *testing.T) {
	a, _ := logAgent(t, "hello\n")
	l, err := listenKubeletAPI("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.serveKubeletAPI(ctx, l); close(done) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	resp, err := client.Get("https://" + l.Addr().String() + "/containerLogs/bookinfo/productpage-v1-x/istio-proxy")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello\n" || resp.TLS == nil {
		t.Errorf("= %d %q tls=%v", resp.StatusCode, body, resp.TLS != nil)
	}
	if _, err := listenKubeletAPI("127.0.0.5:0"); err == nil || !strings.Contains(err.Error(), "the node's address is 127.0.0.1") {
		t.Errorf("another host: %v", err)
	}
}

// TestPortForwardUnknownPod: port forwarding to a pod the node does not
// run is refused before any upgrade, with the kubelet's kind of message.
func TestPortForwardUnknownPod(t *testing.T) {
	a, _ := logAgent(t, "")
	srv := httptest.NewServer(a.kubeletHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/portForward/bookinfo/productpage-v1-x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "is not running on node skein-test") {
		t.Errorf("= %d %q", resp.StatusCode, body)
	}
}
