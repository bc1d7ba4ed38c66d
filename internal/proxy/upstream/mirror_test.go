package upstream

import "testing"

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews:9080": "reviews-shadow:9080", "reviews": "reviews-shadow",
		"10.0.0.1:80": "10.0.0.1-shadow:80", "a.b.svc.cluster.local": "a.b.svc.cluster.local-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}
