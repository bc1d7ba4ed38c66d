package stats

import (
	"regexp"
	"testing"
)

func TestHistogramBuckets(t *testing.T) {
	h := NewHistogram([]float64{0.5, 1, 5, 10})
	for _, v := range []float64{0.2, 0.5, 0.7, 3, 10, 11, 1e6} {
		h.Observe(v)
	}
	v := h.Value()
	// le is inclusive: 0.5 falls in the 0.5 bucket, 10 in the 10 bucket.
	want := []uint64{2, 3, 4, 5, 7}
	for i, w := range want {
		if v.Cumulative[i] != w {
			t.Errorf("bucket %d = %d, want %d (all %v)", i, v.Cumulative[i], w, v.Cumulative)
		}
	}
	if v.Count != 7 || v.Sum != 0.2+0.5+0.7+3+10+11+1e6 {
		t.Errorf("count %d sum %v", v.Count, v.Sum)
	}
}

func TestFamilySeries(t *testing.T) {
	s := NewStore()
	f := s.Family("istio_requests_total", KindCounter, []string{"a", "b"}, nil)
	vals := []string{"x", "y"}
	f.With(Key(vals), vals).Counter.Inc()
	f.With(Key(vals), vals).Counter.Inc()
	other := []string{"x", "z"}
	f.With(Key(other), other).Counter.Inc()
	if s.Family("istio_requests_total", KindCounter, []string{"a", "b"}, nil) != f {
		t.Fatal("same shape gave another family")
	}
	if s.Family("istio_requests_total", KindCounter, []string{"a"}, nil) == f {
		t.Fatal("other shape gave the same family")
	}
	ss := f.Series()
	if len(ss) != 2 || ss[0].Counter.Value() != 2 || ss[1].Counter.Value() != 1 {
		t.Fatalf("series %+v", ss)
	}
}

func TestMatcher(t *testing.T) {
	tests := []struct {
		m    *Matcher
		name string
		want bool
	}{
		{nil, "cluster.a.upstream_rq_total", true},
		{&Matcher{}, "anything", true},
		{&Matcher{InclusionPrefixes: []string{"server"}}, "server.live", true},
		{&Matcher{InclusionPrefixes: []string{"server"}}, "cluster.a.x", false},
		{&Matcher{InclusionSuffixes: []string{"rbac.denied"}}, "http.in.rbac.denied", true},
		{&Matcher{InclusionRegexps: []*regexp.Regexp{regexp.MustCompile(`^(?:.*upstream_rq.*)$`)}}, "cluster.a.upstream_rq_total", true},
		{&Matcher{ExclusionRegexps: []*regexp.Regexp{regexp.MustCompile(`^(?:cluster\..*)$`)}}, "cluster.a.upstream_rq_total", false},
		{&Matcher{ExclusionRegexps: []*regexp.Regexp{regexp.MustCompile(`^(?:cluster\..*)$`)}}, "server.live", true},
	}
	for _, tt := range tests {
		if got := tt.m.Match(tt.name); got != tt.want {
			t.Errorf("%+v.Match(%q) = %v, want %v", tt.m, tt.name, got, tt.want)
		}
	}
}
