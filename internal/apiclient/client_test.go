package apiclient_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/config"
	"github.com/skein-mesh/skein/internal/configapi"
	"github.com/skein-mesh/skein/internal/configstore"
	networking "istio.io/api/networking/v1alpha3"
)

func newClient(t *testing.T) (*apiclient.Client, *configstore.Store) {
	t.Helper()
	store := configstore.OpenMemory()
	guard := &configapi.Guard{AdminToken: "owner-secret"}
	srv := httptest.NewServer(guard.Handler(configapi.NewHandler(store, slog.New(slog.NewTextHandler(io.Discard, nil)))))
	t.Cleanup(srv.Close)
	// The owner's credential file, found as the CLI finds it.
	cred := filepath.Join(t.TempDir(), "ca", "admin-token")
	os.MkdirAll(filepath.Dir(cred), 0o700)
	if err := os.WriteFile(cred, []byte("owner-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SKEIN_HOME", filepath.Dir(filepath.Dir(cred)))
	return apiclient.New(strings.TrimPrefix(srv.URL, "http://")), store
}

func TestRoundTrip(t *testing.T) {
	c, store := newClient(t)
	ctx := context.Background()
	objs, _, err := config.LoadFiles([]string{"../config/testdata/tutorial"}, "")
	if err != nil {
		t.Fatal(err)
	}

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := c.DryRun(ctx, objs)
	if err != nil || len(res) != len(objs) || store.Revision() != 0 {
		t.Fatalf("dry run: %v %v", res, err)
	}
	res, err = c.Apply(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	if res[3].String() != "virtualservice.networking.istio.io/reviews created" {
		t.Errorf("result = %s", res[3])
	}

	list, rev, err := c.List(ctx, "DestinationRule", "default")
	if err != nil || rev != 1 || len(list) != 2 {
		t.Fatalf("list: %d objects at %d, %v", len(list), rev, err)
	}
	got, err := c.Get(ctx, config.Key{Kind: "VirtualService", Namespace: "default", Name: "unreliable-service"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := store.Snapshot().Get(got.Key())
	if !config.ContentEqual(got, want) || got.Meta.ResourceVersion != "1" || got.Meta.Generation != 1 {
		t.Errorf("get returned %+v", got.Meta)
	}
	if got.Spec.(*networking.VirtualService).GetHttp()[0].GetTimeout().AsDuration() != 10*time.Second {
		t.Error("timeout lost on the way")
	}

	_, err = c.Get(ctx, config.Key{Kind: "VirtualService", Namespace: "default", Name: "nope"})
	if !apiclient.IsNotFound(err) || err.Error() != `virtualservices.networking.istio.io "nope" not found` {
		t.Errorf("get missing: %v", err)
	}

	res, err = c.Delete(ctx, []config.Key{{Kind: "VirtualService", Namespace: "default", Name: "reviews"}})
	if err != nil || res[0].Action != "deleted" {
		t.Fatalf("delete: %v %v", res, err)
	}
	_, err = c.Delete(ctx, []config.Key{{Kind: "VirtualService", Namespace: "default", Name: "reviews"}})
	if !apiclient.IsNotFound(err) {
		t.Errorf("second delete: %v", err)
	}
}

func TestWaitForChange(t *testing.T) {
	c, store := newClient(t)
	ns, _, _ := config.LoadReader("ns.yaml", strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"), "")
	go func() {
		time.Sleep(50 * time.Millisecond)
		store.Apply(ns)
	}()
	rev, err := c.WaitForChange(context.Background(), 0)
	if err != nil || rev != 1 {
		t.Fatalf("rev %d, err %v", rev, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if _, err := c.WaitForChange(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	err = apiclient.New(addr).Ping(context.Background())
	var ue *apiclient.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %T %v", err, err)
	}
	want := `cannot reach the Skein control plane at ` + addr + ` (is "skein up" or "skein discovery" running?)`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	if err := apiclient.New("http://" + addr + "/").Ping(context.Background()); err == nil || err.Error() != want {
		t.Errorf("URL form: %v", err)
	}
}
