package configstore

import (
	"testing"
	"time"

	"github.com/skein-mesh/skein/internal/config"
)

// clusterObject is what the mirror hands over: an object with the API
// server's metadata.
func clusterObject(t *testing.T, yaml, rv string, gen int64) *config.Object {
	t.Helper()
	o := objects(t, yaml)[0]
	o.Meta.ResourceVersion, o.Meta.Generation = rv, gen
	o.Meta.CreationTimestamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return o
}

func TestMirror(t *testing.T) {
	s := OpenMemory()
	reviews := func(subset, rv string) *config.Object { return clusterObject(t, dr("reviews", subset), rv, 7) }
	steps := []struct {
		name    string
		puts    []*config.Object
		deletes []config.Key
		want    string
		rev     int64
	}{
		{"initial list in one revision", []*config.Object{reviews("v1", "100"), clusterObject(t, dr("ratings", "v1"), "101", 1)}, nil,
			"destinationrule.networking.istio.io/reviews created; destinationrule.networking.istio.io/ratings created", 1},
		{"resync changes nothing", []*config.Object{reviews("v1", "100")}, nil, "", 1},
		{"update", []*config.Object{reviews("v2", "120")}, nil, "destinationrule.networking.istio.io/reviews configured", 2},
		{"delete of an absent key is fine", nil, []config.Key{{Kind: "DestinationRule", Namespace: "default", Name: "nope"}}, "", 2},
		{"put and delete together", []*config.Object{reviews("v3", "130")}, []config.Key{{Kind: "destinationrules", Namespace: "default", Name: "ratings"}},
			"destinationrule.networking.istio.io/reviews configured; destinationrule.networking.istio.io/ratings deleted", 3},
	}
	for _, st := range steps {
		res, err := s.Mirror(st.puts, st.deletes)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := actions(res); got != st.want {
			t.Errorf("%s: results %q, want %q", st.name, got, st.want)
		}
		if got := s.Revision(); got != st.rev {
			t.Errorf("%s: revision %d, want %d", st.name, got, st.rev)
		}
	}
	got, ok := s.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "reviews"})
	if !ok {
		t.Fatal("reviews missing")
	}
	// The cluster's metadata is kept, not the store's own.
	if got.Meta.ResourceVersion != "130" || got.Meta.Generation != 7 || got.Meta.CreationTimestamp.Year() != 2026 {
		t.Errorf("metadata %+v, want the cluster's (resourceVersion 130, generation 7, created 2026)", got.Meta)
	}
	if _, ok := s.Snapshot().Get(config.Key{Kind: "DestinationRule", Namespace: "default", Name: "ratings"}); ok {
		t.Error("ratings still stored after delete")
	}
}

func TestMirrorRefusesUnknownKinds(t *testing.T) {
	s := OpenMemory()
	bad := clusterObject(t, dr("reviews", "v1"), "1", 1)
	bad.GVK.Kind = "Bogus"
	if _, err := s.Mirror([]*config.Object{bad}, nil); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := s.Mirror(nil, []config.Key{{Kind: "Bogus", Name: "x"}}); err == nil {
		t.Error("unknown kind delete accepted")
	}
	if s.Revision() != 0 {
		t.Errorf("revision %d after refused mirrors, want 0", s.Revision())
	}
}
