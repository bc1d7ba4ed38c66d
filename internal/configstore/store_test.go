package configstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/config"
	networking "istio.io/api/networking/v1alpha3"
)

func objects(t testing.TB, yaml string) []*config.Object {
	t.Helper()
	objs, _, err := config.LoadReader("test.yaml", strings.NewReader(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func dr(name, subset string) string {
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: %s\nspec:\n  host: %s\n  subsets:\n  - name: %s\n    labels: {version: %s}\n---\n", name, name, subset, subset)
}

func actions(results []config.ApplyResult) string {
	var s []string
	for _, r := range results {
		s = append(s, r.String())
	}
	return strings.Join(s, "; ")
}

func TestApplyRevisionsAndGenerations(t *testing.T) {
	s := OpenMemory()
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }

	steps := []struct {
		name    string
		yaml    string
		want    string
		rev     int64
		gen     int64 // of DestinationRule default/reviews afterwards
		version string
	}{
		{"create", dr("reviews", "v1") + dr("ratings", "v1"), "destinationrule.networking.istio.io/reviews created; destinationrule.networking.istio.io/ratings created", 1, 1, "1"},
		{"same again", dr("reviews", "v1"), "destinationrule.networking.istio.io/reviews unchanged", 1, 1, "1"},
		{"spec change", dr("reviews", "v2"), "destinationrule.networking.istio.io/reviews configured", 2, 2, "2"},
		{"label change keeps generation", strings.Replace(dr("reviews", "v2"), "  name: reviews\n", "  name: reviews\n  labels: {team: a}\n", 1), "destinationrule.networking.istio.io/reviews configured", 3, 2, "3"},
		{"other object changes only its own version", dr("ratings", "v2"), "destinationrule.networking.istio.io/ratings configured", 4, 2, "3"},
	}
	for _, st := range steps {
		clock = clock.Add(time.Minute)
		res, err := s.Apply(objects(t, st.yaml))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := actions(res); got != st.want {
			t.Errorf("%s: results %q, want %q", st.name, got, st.want)
		}
		if s.Revision() != st.rev {
			t.Errorf("%s: revision %d, want %d", st.name, s.Revision(), st.rev)
		}
		o, ok := s.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "reviews"})
		if !ok {
			t.Fatalf("%s: reviews missing", st.name)
		}
		if o.Meta.Generation != st.gen || o.Meta.ResourceVersion != st.version {
			t.Errorf("%s: generation %d version %s, want %d %s", st.name, o.Meta.Generation, o.Meta.ResourceVersion, st.gen, st.version)
		}
		if want := time.Date(2025, 1, 1, 0, 1, 0, 0, time.UTC); !o.Meta.CreationTimestamp.Equal(want) {
			t.Errorf("%s: creationTimestamp %v, want the first apply's %v", st.name, o.Meta.CreationTimestamp, want)
		}
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s := OpenMemory()
	if _, err := s.Apply(objects(t, dr("reviews", "v1"))); err != nil {
		t.Fatal(err)
	}
	good := objects(t, dr("ratings", "v1"))[0]
	bad := objects(t, dr("details", "v1"))[0]
	bad.Spec.(*networking.DestinationRule).Host = "" // valid when loaded, broken since
	_, err := s.Apply([]*config.Object{good, bad})
	var inv *InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "DestinationRule/details spec.host: required field is missing") {
		t.Fatalf("err = %v", err)
	}
	if s.Revision() != 1 || len(s.Snapshot().List("DestinationRule")) != 1 {
		t.Errorf("a failed apply changed the store: revision %d, %d objects", s.Revision(), len(s.Snapshot().List("DestinationRule")))
	}
}

func TestApplyDoesNotAliasInput(t *testing.T) {
	s := OpenMemory()
	in := objects(t, dr("reviews", "v1"))
	if _, err := s.Apply(in); err != nil {
		t.Fatal(err)
	}
	in[0].Spec.(*networking.DestinationRule).Host = "changed"
	in[0].Meta.Labels = map[string]string{"x": "y"}
	o, _ := s.Snapshot().Get(in[0].Key())
	if o.Spec.(*networking.DestinationRule).Host != "reviews" || o.Meta.Labels != nil {
		t.Error("the store shares state with the caller's objects")
	}
}

func TestDryRun(t *testing.T) {
	s := OpenMemory()
	s.Apply(objects(t, dr("reviews", "v1")))
	res, err := s.DryRun(objects(t, dr("reviews", "v2")+dr("ratings", "v1")))
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(res); got != "destinationrule.networking.istio.io/reviews configured; destinationrule.networking.istio.io/ratings created" {
		t.Errorf("dry run = %q", got)
	}
	if s.Revision() != 1 || len(s.Snapshot().List("DestinationRule")) != 1 {
		t.Error("dry run changed the store")
	}
}

func TestDelete(t *testing.T) {
	s := OpenMemory()
	s.Apply(objects(t, dr("reviews", "v1")+dr("ratings", "v1")+"apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n"))

	_, err := s.Delete([]config.Key{{Kind: "DestinationRule", Namespace: "default", Name: "reviews"}, {Kind: "DestinationRule", Namespace: "default", Name: "nope"}})
	var nf *NotFoundError
	if !errors.As(err, &nf) || err.Error() != `destinationrules.networking.istio.io "nope" not found` {
		t.Fatalf("err = %v", err)
	}
	if len(s.Snapshot().List("DestinationRule")) != 2 || s.Revision() != 1 {
		t.Fatal("a failed delete removed something")
	}

	res, err := s.Delete([]config.Key{{Kind: "dr", Namespace: "default", Name: "reviews"}, {Kind: "Namespace", Namespace: "ignored", Name: "bookinfo"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(res); got != "destinationrule.networking.istio.io/reviews deleted; namespace/bookinfo deleted" {
		t.Errorf("results = %q", got)
	}
	if s.Revision() != 2 || len(s.Snapshot().List("DestinationRule")) != 1 || len(s.Snapshot().List("Namespace")) != 0 {
		t.Errorf("after delete: revision %d", s.Revision())
	}
	if _, err := s.Delete([]config.Key{{Kind: "Service", Namespace: "default", Name: "x"}}); err == nil || err.Error() != `services "x" not found` {
		t.Errorf("core kind not found: %v", err)
	}
}

func TestSnapshotsAreImmutableAndSorted(t *testing.T) {
	s := OpenMemory()
	s.Apply(objects(t, dr("b", "v1")+dr("a", "v1")+strings.Replace(dr("c", "v1"), "  name: c\n", "  name: c\n  namespace: alpha\n", 1)))
	before := s.Snapshot()
	s.Apply(objects(t, dr("a", "v2")+dr("d", "v1")))
	s.Delete([]config.Key{{Kind: "DestinationRule", Namespace: "default", Name: "b"}})

	var names []string
	for _, o := range before.List("DestinationRule") {
		names = append(names, o.Meta.Namespace+"/"+o.Meta.Name)
	}
	if got := strings.Join(names, " "); got != "alpha/c default/a default/b" {
		t.Errorf("old snapshot lists %q", got)
	}
	a, _ := before.Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "a"})
	if a.Spec.(*networking.DestinationRule).Subsets[0].Name != "v1" || before.Revision() != 1 {
		t.Error("old snapshot changed")
	}
	if n := len(s.Snapshot().List("DestinationRule")); n != 3 {
		t.Errorf("current snapshot has %d objects, want 3", n)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	s := OpenMemory()
	ch, cancel := s.Subscribe()
	for i := range 3 {
		s.Apply(objects(t, dr(fmt.Sprintf("r%d", i), "v1")))
	}
	select {
	case <-ch:
	default:
		t.Fatal("no notification after changes")
	}
	select {
	case <-ch:
		t.Fatal("notifications did not coalesce")
	default:
	}
	s.Apply(objects(t, dr("r0", "v1"))) // unchanged: no notification
	select {
	case <-ch:
		t.Fatal("notified without a change")
	default:
	}
	cancel()
	cancel() // idempotent
	s.Apply(objects(t, dr("r9", "v1")))
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	default:
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(objects(t, dr("reviews", "v1")+dr("ratings", "v1")))
	s.Apply(objects(t, dr("reviews", "v2")+"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, labels: {app: reviews}}\nspec:\n  ports: [{port: 9080, name: http}]\n"))
	s.Delete([]config.Key{{Kind: "DestinationRule", Namespace: "default", Name: "ratings"}})

	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Revision() != s.Revision() || again.Revision() != 3 {
		t.Errorf("revision %d after reopen, want %d", again.Revision(), s.Revision())
	}
	for _, kind := range []string{"DestinationRule", "Service"} {
		old, reopened := s.Snapshot().List(kind), again.Snapshot().List(kind)
		if len(old) != len(reopened) {
			t.Fatalf("%s: %d objects after reopen, want %d", kind, len(reopened), len(old))
		}
		for i := range old {
			if !config.ContentEqual(old[i], reopened[i]) || old[i].Meta.ResourceVersion != reopened[i].Meta.ResourceVersion ||
				old[i].Meta.Generation != reopened[i].Meta.Generation || !old[i].Meta.CreationTimestamp.Equal(reopened[i].Meta.CreationTimestamp) {
				t.Errorf("%s differs after reopen: %+v vs %+v", old[i].Key(), old[i].Meta, reopened[i].Meta)
			}
		}
	}
	// The reopened store carries on from where the old one was.
	res, _ := again.Apply(objects(t, dr("reviews", "v2")))
	if actions(res) != "destinationrule.networking.istio.io/reviews unchanged" {
		t.Errorf("after reopen: %s", actions(res))
	}
}

func TestFailedWriteLeavesOldSet(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(objects(t, dr("reviews", "v1"))); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, storeFile))
	if err != nil {
		t.Fatal(err)
	}

	// Half the bytes reach the disk, then the write fails.
	s.file.writeData = func(f *os.File, data []byte) error {
		f.Write(data[:len(data)/2])
		return errors.New("disk full")
	}
	_, err = s.Apply(objects(t, dr("reviews", "v2")+dr("ratings", "v1")))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, storeFile))
	if string(after) != string(before) {
		t.Error("store.json changed after a failed write")
	}
	if s.Revision() != 1 || len(s.Snapshot().List("DestinationRule")) != 1 {
		t.Error("memory changed after a failed write")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
	if _, err := s.Delete([]config.Key{{Kind: "DestinationRule", Namespace: "default", Name: "reviews"}}); err == nil {
		t.Error("delete succeeded although the write failed")
	}

	// A crash mid-write leaves a temp file: reopening ignores and removes it.
	os.WriteFile(filepath.Join(dir, tempPrefix+"123"), []byte(`{"revision": 9, "obj`), 0o644)
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := again.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "reviews"})
	if !ok || o.Spec.(*networking.DestinationRule).Subsets[0].Name != "v1" || again.Revision() != 1 {
		t.Error("reopen after a failed write did not give the old set")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(left) != 0 {
		t.Errorf("stale temp files kept: %v", left)
	}
}

func TestOpenRejectsCorruptFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, storeFile), []byte(`{"revision": 1, "objects": [{"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}]}`), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), `unknown kind "Nope"`) {
		t.Errorf("err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, storeFile), []byte(`{"revision": 1, "obj`), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("err = %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := s.Apply(objects(t, dr(fmt.Sprintf("w%d-%d", w, i), "v1"))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				list := snap.List("DestinationRule")
				if int64(len(list)) != snap.Revision() {
					t.Errorf("snapshot at revision %d has %d objects", snap.Revision(), len(list))
					return
				}
				for _, o := range list {
					_ = o.Spec.(*networking.DestinationRule).GetHost()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if n := len(s.Snapshot().List("DestinationRule")); n != writers*perWriter || s.Revision() != writers*perWriter {
		t.Errorf("%d objects at revision %d, want %d", n, s.Revision(), writers*perWriter)
	}
}
