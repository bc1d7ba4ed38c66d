package hcm

import (
	"regexp"
	"testing"
)

func TestRequestIDIsUUIDv4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := newRequestID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("request id %q: want a fresh UUID v4", id)
		}
		seen[id] = true
	}
}
