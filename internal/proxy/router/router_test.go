package router

import (
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentRoute shares one Table between goroutines; run with -race.
func TestConcurrentRoute(t *testing.T) {
	tbl := mustCompile(t, typicalTable)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r := newRequest(http.MethodGet, benchRequests[(g+i)%len(benchRequests)].url)
				d, ok := tbl.Route(r)
				if !ok {
					t.Error("no route")
					return
				}
				d.ApplyRequest(r)
				d.ApplyResponse(http.Header{})
			}
		}()
	}
	wg.Wait()
}

func TestTableName(t *testing.T) {
	if got := mustCompile(t, "name: http.8080").Name(); got != "http.8080" {
		t.Fatalf("Name() = %q", got)
	}
}
