package stats

import (
	"sync"
	"testing"
)

func TestStoreCountsConcurrentlyAndSnapshotsSorted(t *testing.T) {
	s := NewStore()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				s.Counter("b.requests").Inc()
				s.Gauge("a.active").Inc()
			}
		}()
	}
	wg.Wait()
	s.Gauge("a.active").Add(-8000)
	got := s.Snapshot()
	want := []Stat{{Name: "a.active", Kind: KindGauge, Value: 0}, {Name: "b.requests", Kind: KindCounter, Value: 8000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Snapshot = %+v, want %+v", got, want)
	}
}
