package node

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

// tokenServer answers TokenRequests as the API server does, numbering the
// tokens it issues and keeping each request it saw.
type tokenServer struct {
	ttl time.Duration // 0: no expirationTimestamp in the answer
	err error

	mu       sync.Mutex
	requests []k8stesting.CreateActionImpl
}

func (s *tokenServer) install(dc *fake.FakeDynamicClient) {
	dc.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ca := action.(k8stesting.CreateActionImpl)
		if ca.GetSubresource() != "token" {
			return false, nil, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, ca)
		if s.err != nil {
			return true, nil, s.err
		}
		tr := &authenticationv1.TokenRequest{
			TypeMeta:   metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
			ObjectMeta: metav1.ObjectMeta{Name: ca.Name, Namespace: ca.GetNamespace()},
			Status:     authenticationv1.TokenRequestStatus{Token: "token-" + string(rune('0'+len(s.requests)))},
		}
		if s.ttl != 0 {
			tr.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(s.ttl))
		}
		return true, tr, nil
	})
}

func (s *tokenServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// readTree maps every file under dir (relative, slash-separated) to its
// content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func TestPrepareVolumes(t *testing.T) {
	yes := true
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-config", Namespace: "demo"},
		Data:       map[string]string{"app.yaml": "port: 8080\n", "log.level": "debug"},
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: "demo"},
		Data:       map[string][]byte{"tls.crt": []byte("CERT\x00\xff"), "tls.key": []byte("KEY")},
	}
	// A same-named ConfigMap elsewhere must not be read.
	otherNS := cm.DeepCopy()
	otherNS.Namespace, otherNS.Data = "other", map[string]string{"wrong": "namespace"}
	fieldRef := func(path, field string) corev1.DownwardAPIVolumeFile {
		return corev1.DownwardAPIVolumeFile{Path: path, FieldRef: &corev1.ObjectFieldSelector{FieldPath: field}}
	}
	expiry := int64(600)
	for _, tc := range []struct {
		name      string
		volumes   []corev1.Volume
		want      map[string]string // volume-relative file → content
		wantErr   string
		wantToken *authenticationv1.TokenRequestSpec
	}{
		{
			name:    "emptyDir",
			volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			want:    map[string]string{},
		},
		{
			name:    "configMap, every key",
			volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}},
			want:    map[string]string{"cfg/app.yaml": "port: 8080\n", "cfg/log.level": "debug"},
		},
		{
			name: "configMap items",
			volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"},
				Items:                []corev1.KeyToPath{{Key: "app.yaml", Path: "conf/main.yaml"}},
			}}}},
			want: map[string]string{"cfg/conf/main.yaml": "port: 8080\n"},
		},
		{
			name: "configMap item with a missing key",
			volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"},
				Items:                []corev1.KeyToPath{{Key: "nope", Path: "x"}},
			}}}},
			wantErr: `volume "cfg": no key "nope"`,
		},
		{
			name:    "missing configMap",
			volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}}},
			wantErr: "configmap demo/absent not found",
		},
		{
			name: "missing optional configMap",
			volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &yes}}}},
			want: map[string]string{},
		},
		{
			name:    "secret, decoded",
			volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}}},
			want:    map[string]string{"tls/tls.crt": "CERT\x00\xff", "tls/tls.key": "KEY"},
		},
		{
			name: "secret items",
			volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "web-tls", Items: []corev1.KeyToPath{{Key: "tls.key", Path: "private/key.pem"}}}}}},
			want: map[string]string{"tls/private/key.pem": "KEY"},
		},
		{
			name:    "missing secret",
			volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent"}}}},
			wantErr: "secret demo/absent not found",
		},
		{
			name:    "missing optional secret",
			volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: &yes}}}},
			want:    map[string]string{},
		},
		{
			name: "downwardAPI",
			volumes: []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				fieldRef("name", "metadata.name"),
				fieldRef("namespace", "metadata.namespace"),
				fieldRef("uid", "metadata.uid"),
				fieldRef("labels", "metadata.labels"),
				fieldRef("annotations", "metadata.annotations"),
				fieldRef("app", "metadata.labels['app']"),
				fieldRef("note", "metadata.annotations['note']"),
				{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}},
			}}}}},
			// The kubelet's format: sorted key="quoted value" lines.
			want: map[string]string{
				"podinfo/name": "web", "podinfo/namespace": "demo", "podinfo/uid": "uid-web",
				"podinfo/labels": "app=\"web\"\nversion=\"v1\"", "podinfo/annotations": `note="say \"hi\""`,
				"podinfo/app": "web", "podinfo/note": `say "hi"`,
			},
		},
		{
			name: "projected token, configMap, secret and downwardAPI",
			volumes: []corev1.Volume{{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "istio-token", Audience: "istio-ca", ExpirationSeconds: &expiry}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}, Items: []corev1.KeyToPath{{Key: "log.level", Path: "level"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "web-tls"}, Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{fieldRef("ns", "metadata.namespace")}}},
			}}}}},
			want: map[string]string{"istio-token/istio-token": "token-1", "istio-token/level": "debug", "istio-token/crt": "CERT\x00\xff", "istio-token/ns": "demo"},
			wantToken: &authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &expiry,
				BoundObjectRef: &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web", UID: "uid-web"}},
		},
		{
			name: "projected token, defaults",
			volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			}}}}},
			want: map[string]string{"kube-api-access/token": "token-1"},
			wantToken: &authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600)),
				BoundObjectRef: &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web", UID: "uid-web"}},
		},
		{
			name: "projected source missing",
			volumes: []corev1.Volume{{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{fieldRef("ns", "metadata.namespace")}}},
			}}}}},
			wantErr: `volume "p": configmap demo/absent not found`,
		},
		{
			name:    "unsupported",
			volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}}},
			wantErr: `volume "host": only emptyDir`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := newFake(t, cm, otherNS, secret)
			ts := &tokenServer{ttl: time.Hour}
			ts.install(dc)
			a := newAgent(t, dc)
			pod := testPod("web")
			pod.Spec.Volumes = tc.volumes
			dir := filepath.Join(t.TempDir(), "pod")
			vols, tokens, err := a.prepareVolumes(context.Background(), pod, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.volumes {
				if want := filepath.Join(dir, "volumes", v.Name); vols[v.Name] != want {
					t.Errorf("volume %s at %q, want %q", v.Name, vols[v.Name], want)
				}
			}
			if got := readTree(t, filepath.Join(dir, "volumes")); !maps.Equal(got, tc.want) {
				t.Errorf("files = %q\nwant %q", got, tc.want)
			}
			if tc.wantToken == nil {
				if len(tokens) != 0 || ts.count() != 0 {
					t.Errorf("%d tokens, %d TokenRequests; want none", len(tokens), ts.count())
				}
				return
			}
			if len(tokens) != 1 || ts.count() != 1 {
				t.Fatalf("%d tokens, %d TokenRequests; want 1", len(tokens), ts.count())
			}
			req := ts.requests[0]
			// The real client refuses a subresource create without a name.
			if req.Name != "web-sa" || req.GetNamespace() != "demo" {
				t.Errorf("TokenRequest for serviceaccount %q in %q, want web-sa in demo", req.Name, req.GetNamespace())
			}
			got := &authenticationv1.TokenRequest{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(req.GetObject().(*unstructured.Unstructured).Object, got); err != nil {
				t.Fatal(err)
			}
			if !equalJSON(t, got.Spec, *tc.wantToken) {
				t.Errorf("TokenRequest spec = %+v, want %+v", got.Spec, *tc.wantToken)
			}
			info, err := os.Stat(tokens[0].path)
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("token file: %v %v, want mode 0600", info, err)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestMintTokenRefreshTime(t *testing.T) {
	for _, tc := range []struct {
		name        string
		server      *tokenServer
		expiry      int64
		wantRefresh time.Duration // from now: 80% of the token's life
		wantErr     string
	}{
		{"expiry from the answer", &tokenServer{ttl: time.Hour}, 600, 48 * time.Minute, ""},
		{"expiry asked for", &tokenServer{}, 600, 8 * time.Minute, ""},
		{"request refused", &tokenServer{err: errors.New("forbidden")}, 600, 0, "TokenRequest for serviceaccount demo/web-sa: forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := newFake(t)
			tc.server.install(dc)
			a := newAgent(t, dc)
			tok := &projectedToken{pod: testPod("web"), path: filepath.Join(t.TempDir(), "token"), expiry: tc.expiry}
			now := time.Now()
			err := a.mintToken(context.Background(), tok)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Stat(tok.path); !os.IsNotExist(err) {
					t.Errorf("token file written: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// expirationTimestamp has whole seconds.
			if d := tok.refreshAt.Sub(now); d < tc.wantRefresh-time.Second || d > tc.wantRefresh+time.Second {
				t.Errorf("refresh in %v, want %v", d, tc.wantRefresh)
			}
			if b, _ := os.ReadFile(tok.path); string(b) != "token-1" {
				t.Errorf("token file = %q", b)
			}
		})
	}
}

func TestMintTokenWithoutToken(t *testing.T) {
	dc := newFake(t)
	dc.PrependReactor("create", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authenticationv1.TokenRequest{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"}}, nil
	})
	a := newAgent(t, dc)
	pod := testPod("web")
	pod.Spec.ServiceAccountName = ""
	err := a.mintToken(context.Background(), &projectedToken{pod: pod, path: filepath.Join(t.TempDir(), "token"), expiry: 600})
	if err == nil || !strings.Contains(err.Error(), "demo/default: no status.token") {
		t.Fatalf("err = %v, want no status.token for the default service account", err)
	}
}

func TestTokenLoopRefreshesDueTokens(t *testing.T) {
	dc := newFake(t)
	ts := &tokenServer{ttl: time.Hour}
	ts.install(dc)
	a := newAgent(t, dc)
	a.opts.TokenCheck = 5 * time.Millisecond
	dir := t.TempDir()
	token := func(pod string, refreshAt time.Time) *projectedToken {
		return &projectedToken{pod: testPod(pod), path: filepath.Join(dir, pod), expiry: 3600, refreshAt: refreshAt}
	}
	due := token("due", time.Now().Add(-time.Second))
	fresh := token("fresh", time.Now().Add(time.Hour))
	stopping := token("stopping", time.Now().Add(-time.Second))
	a.running["demo/due"] = &podEntry{tokens: []*projectedToken{due, fresh}}
	a.running["demo/stopping"] = &podEntry{tokens: []*projectedToken{stopping}, stopping: true}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.tokenLoop(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for ts.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// A few more ticks: a refreshed token must not be asked for again.
	time.Sleep(30 * time.Millisecond)
	cancel()
	<-done

	if n := ts.count(); n != 1 {
		t.Fatalf("%d TokenRequests, want 1 (only the due token, once)", n)
	}
	var got authenticationv1.TokenRequest
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ts.requests[0].GetObject().(*unstructured.Unstructured).Object, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.BoundObjectRef == nil || got.Spec.BoundObjectRef.Name != "due" {
		t.Errorf("refreshed %+v, want the due pod's token", got.Spec.BoundObjectRef)
	}
	if b, _ := os.ReadFile(due.path); string(b) != "token-1" {
		t.Errorf("due token file = %q, want the new token", b)
	}
	if d := time.Until(due.refreshAt); d < 47*time.Minute {
		t.Errorf("next refresh in %v, want about 48m", d)
	}
	for _, tok := range []*projectedToken{fresh, stopping} {
		if _, err := os.Stat(tok.path); !os.IsNotExist(err) {
			t.Errorf("%s token written: %v", tok.pod.Name, err)
		}
	}
}

// TestTokenLoopDuringStart: the token loop runs while pods start; under
// -race this catches an unlocked write of a starting pod's tokens.
func TestTokenLoopDuringStart(t *testing.T) {
	dc := newFake(t)
	ts := &tokenServer{ttl: time.Hour}
	ts.install(dc)
	// Prepended, so it runs before the token server. A slow TokenRequest holds start between adding the entry and
	// setting its tokens, while the loop looks at the entry.
	dc.PrependReactor("create", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(20 * time.Millisecond)
		return false, nil, nil
	})
	a := newAgent(t, dc)
	a.opts.TokenCheck = time.Millisecond
	pod := testPod("web")
	pod.Spec.Containers = nil // nothing to run: only the volumes matter
	pod.Spec.Volumes = []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.tokenLoop(ctx) }()
	e := a.start(ctx, "demo/web", pod)
	cancel()
	<-done
	if e.failure != "" {
		t.Fatalf("start failed: %s", e.failure)
	}
	a.mu.Lock()
	n := len(a.running["demo/web"].tokens)
	a.mu.Unlock()
	if n != 1 {
		t.Errorf("%d tokens kept fresh, want 1", n)
	}
	if e.rp != nil {
		e.rp.Stop(context.Background())
	}
}
