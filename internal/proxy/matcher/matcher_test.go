package matcher

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// parse reads JSON config into m, as the control plane would send it.
func parse[M proto.Message](t *testing.T, js string, m M) M {
	t.Helper()
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return m
}

func TestString(t *testing.T) {
	cases := []struct {
		config string
		match  []string
		miss   []string
	}{
		{`{"exact": "jason"}`, []string{"jason"}, []string{"Jason", "jasonx", ""}},
		{`{"exact": ""}`, []string{""}, []string{"a"}},
		{`{"exact": "jason", "ignoreCase": true}`, []string{"JASON", "jAsOn"}, []string{"jasonx"}},
		{`{"prefix": "/api"}`, []string{"/api", "/api/v1"}, []string{"/ap", "/API"}},
		{`{"prefix": "/api", "ignoreCase": true}`, []string{"/API/x"}, []string{"/ap"}},
		{`{"suffix": ".svc"}`, []string{"a.svc", ".svc"}, []string{"svc", "a.SVC"}},
		{`{"suffix": ".SVC", "ignoreCase": true}`, []string{"a.svc"}, []string{"a.svcx"}},
		{`{"contains": "mid"}`, []string{"amidst", "mid"}, []string{"MID", "mi"}},
		{`{"contains": "mid", "ignoreCase": true}`, []string{"aMIDst", "MID"}, []string{"mi", "m-id"}},
		// Envoy folds ASCII only: the Kelvin sign is not a "k".
		{`{"exact": "k", "ignoreCase": true}`, []string{"K"}, []string{"\u212a"}},
		// A regex must match the whole string, alternatives included.
		{`{"safeRegex": {"regex": "v[0-9]"}}`, []string{"v1"}, []string{"v12", "xv1"}},
		{`{"safeRegex": {"regex": "a|ab"}}`, []string{"a", "ab"}, []string{"abc"}},
		// ignore_case has no effect on safe_regex.
		{`{"safeRegex": {"regex": "abc"}, "ignoreCase": true}`, []string{"abc"}, []string{"ABC"}},
		{`{"safeRegex": {"regex": ".+", "googleRe2": {}}}`, []string{"x"}, []string{""}},
	}
	for _, tc := range cases {
		m, err := CompileString(parse(t, tc.config, &matcherv3.StringMatcher{}))
		if err != nil {
			t.Errorf("%s: %v", tc.config, err)
			continue
		}
		for _, s := range tc.match {
			if !m.Match(s) {
				t.Errorf("%s does not match %q", tc.config, s)
			}
		}
		for _, s := range tc.miss {
			if m.Match(s) {
				t.Errorf("%s matches %q", tc.config, s)
			}
		}
	}
}

func TestStringExact(t *testing.T) {
	for _, tc := range []struct {
		config string
		value  string
		fold   bool
		ok     bool
	}{
		{`{"exact": "spiffe://a"}`, "spiffe://a", false, true},
		{`{"exact": "A", "ignoreCase": true}`, "A", true, true},
		{`{"prefix": "spiffe://"}`, "", false, false},
		{`{"safeRegex": {"regex": "a"}}`, "", false, false},
	} {
		m, err := CompileString(parse(t, tc.config, &matcherv3.StringMatcher{}))
		if err != nil {
			t.Fatalf("%s: %v", tc.config, err)
		}
		if v, fold, ok := m.Exact(); v != tc.value || fold != tc.fold || ok != tc.ok {
			t.Errorf("%s: Exact() = %q, %v, %v; want %q, %v, %v", tc.config, v, fold, ok, tc.value, tc.fold, tc.ok)
		}
	}
}

// withUnknownField appends a field our protos do not know, as a newer
// control plane could send.
func withUnknownField[M proto.Message](m M) M {
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))
	return m
}

// TestStringErrors checks what makes the proxy NACK a StringMatcher.
func TestStringErrors(t *testing.T) {
	cases := []struct {
		name string
		m    *matcherv3.StringMatcher
		want string // the whole error, or a prefix ending in "..."
	}{
		{"no pattern", &matcherv3.StringMatcher{IgnoreCase: true},
			"a match pattern (exact, prefix, suffix, contains or safe_regex) is required"},
		{"nil", nil, "a match pattern (exact, prefix, suffix, contains or safe_regex) is required"},
		{"empty prefix", parse(t, `{"prefix": ""}`, &matcherv3.StringMatcher{}), "empty prefix, suffix or contains pattern"},
		{"empty suffix", parse(t, `{"suffix": ""}`, &matcherv3.StringMatcher{}), "empty prefix, suffix or contains pattern"},
		{"empty contains", parse(t, `{"contains": ""}`, &matcherv3.StringMatcher{}), "empty prefix, suffix or contains pattern"},
		{"custom", parse(t, `{"custom": {"name": "x"}}`, &matcherv3.StringMatcher{}), `unsupported string matcher field "custom"`},
		{"unknown field", withUnknownField(parse(t, `{"exact": "a"}`, &matcherv3.StringMatcher{})),
			"string matcher has fields unknown to this proxy"},
		{"bad regex", parse(t, `{"safeRegex": {"regex": "[z-a]"}}`, &matcherv3.StringMatcher{}), `safe_regex: invalid regex "[z-a]": ...`},
		{"missing regex", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{}}, "safe_regex: missing regex"},
		{"regex with unknown field", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: withUnknownField(&matcherv3.RegexMatcher{Regex: "a"})}},
			"safe_regex: regex matcher has fields unknown to this proxy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileString(tc.m)
			checkError(t, err, tc.want)
		})
	}
}

func checkError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if prefix, ok := strings.CutSuffix(want, "..."); ok {
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("error %q, want prefix %q", err, prefix)
		}
	} else if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestHeader(t *testing.T) {
	type req struct {
		headers []string // name, value pairs; a name may repeat
		want    bool
	}
	with := func(want bool, headers ...string) req { return req{headers, want} }
	cases := []struct {
		name, config string
		reqs         []req
	}{
		{"string exact", `{"name": "end-user", "stringMatch": {"exact": "jason"}}`, []req{
			with(true, "end-user", "jason"), with(false, "end-user", "Jason"), with(false),
		}},
		{"string exact ignore_case", `{"name": "end-user", "stringMatch": {"exact": "jason", "ignoreCase": true}}`, []req{
			with(true, "end-user", "JASON"), with(false, "end-user", "jasonx"),
		}},
		{"string prefix", `{"name": "x-v", "stringMatch": {"prefix": "ab"}}`, []req{with(true, "x-v", "abc"), with(false, "x-v", "xab")}},
		{"string suffix", `{"name": "x-v", "stringMatch": {"suffix": "bc"}}`, []req{with(true, "x-v", "abc"), with(false, "x-v", "bca")}},
		{"string contains", `{"name": "x-v", "stringMatch": {"contains": "mid"}}`, []req{with(true, "x-v", "amidst"), with(false, "x-v", "MID")}},
		{"string safe_regex", `{"name": "x-v", "stringMatch": {"safeRegex": {"regex": "v[0-9]"}}}`, []req{
			with(true, "x-v", "v1"), with(false, "x-v", "v12"),
		}},
		{"present", `{"name": "x-p", "presentMatch": true}`, []req{with(true, "x-p", ""), with(false)}},
		{"absent", `{"name": "x-p", "presentMatch": false}`, []req{with(false, "x-p", "1"), with(true)}},
		{"no specifier means present", `{"name": "x-p"}`, []req{with(true, "x-p", "1"), with(false)}},

		{"invert string", `{"name": "x-v", "stringMatch": {"exact": "a"}, "invertMatch": true}`, []req{
			with(true, "x-v", "b"), with(false, "x-v", "a"),
			with(false), // Envoy: a missing header fails an inverted value match
		}},
		{"invert present", `{"name": "x-v", "presentMatch": true, "invertMatch": true}`, []req{with(true), with(false, "x-v", "a")}},
		{"invert absent", `{"name": "x-v", "presentMatch": false, "invertMatch": true}`, []req{with(false), with(true, "x-v", "a")}},
		{"invert regex", `{"name": "x-v", "safeRegexMatch": {"regex": "[0-9]{3}"}, "invertMatch": true}`, []req{
			with(true, "x-v", "1234"), with(false, "x-v", "123"),
		}},

		{"missing as empty", `{"name": "x-v", "stringMatch": {"exact": ""}, "treatMissingHeaderAsEmpty": true}`, []req{
			with(true), with(true, "x-v", ""), with(false, "x-v", "a"),
		}},
		{"missing as empty, prefix", `{"name": "x-v", "stringMatch": {"prefix": "a"}, "treatMissingHeaderAsEmpty": true}`, []req{
			with(false), with(true, "x-v", "ab"),
		}},
		{"missing as empty, inverted", `{"name": "x-v", "stringMatch": {"exact": "a"}, "invertMatch": true, "treatMissingHeaderAsEmpty": true}`, []req{
			with(true), with(false, "x-v", "a"),
		}},

		{"multiple values joined with a comma", `{"name": "x-m", "stringMatch": {"exact": "a,b"}}`, []req{
			with(true, "x-m", "a", "x-m", "b"), with(false, "x-m", "a"), with(false, "x-m", "b", "x-m", "a"),
		}},
		{"multiple values, one of them", `{"name": "x-m", "stringMatch": {"exact": "b"}}`, []req{
			with(false, "x-m", "a", "x-m", "b"), with(true, "x-m", "b"),
		}},
		{"name is case-insensitive", `{"name": "X-Mixed-CASE", "stringMatch": {"exact": "1"}}`, []req{with(true, "x-mixed-case", "1")}},

		{"legacy exact", `{"name": "x-v", "exactMatch": "a"}`, []req{with(true, "x-v", "a"), with(false, "x-v", "b")}},
		{"legacy empty exact matches any value", `{"name": "x-v", "exactMatch": ""}`, []req{with(true, "x-v", "b"), with(false)}},
		{"legacy prefix", `{"name": "x-v", "prefixMatch": "a"}`, []req{with(true, "x-v", "ab"), with(false, "x-v", "ba")}},
		{"legacy suffix", `{"name": "x-v", "suffixMatch": "a"}`, []req{with(true, "x-v", "ba"), with(false, "x-v", "ab")}},
		{"legacy contains", `{"name": "x-v", "containsMatch": "a"}`, []req{with(true, "x-v", "bab"), with(false, "x-v", "bbb")}},
		{"legacy safe_regex", `{"name": "x-v", "safeRegexMatch": {"regex": "a+"}}`, []req{with(true, "x-v", "aaa"), with(false, "x-v", "aab")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompileHeader(parse(t, tc.config, &routev3.HeaderMatcher{}))
			if err != nil {
				t.Fatal(err)
			}
			for _, rq := range tc.reqs {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				for i := 0; i+1 < len(rq.headers); i += 2 {
					r.Header.Add(rq.headers[i], rq.headers[i+1])
				}
				if got := m.Match(r); got != rq.want {
					t.Errorf("headers %q: match = %v, want %v", rq.headers, got, rq.want)
				}
			}
		})
	}
}

// TestPseudoHeaders checks the values of :method, :authority, :path and
// :scheme, which live outside http.Request.Header.
func TestPseudoHeaders(t *testing.T) {
	get := httptest.NewRequest(http.MethodGet, "http://reviews:9080/a%2Fb?x=1", nil)
	noQuery := httptest.NewRequest(http.MethodPost, "/p", nil)
	noQuery.Host = ""
	secure := httptest.NewRequest(http.MethodGet, "/", nil)
	secure.URL.Scheme = ""
	secure.TLS = &tls.ConnectionState{}
	client, _ := http.NewRequest("", "HTTPS://api.example.com", nil)
	client.Host = ""

	cases := []struct {
		config string
		r      *http.Request
		want   bool
	}{
		{`{"name": ":method", "stringMatch": {"exact": "GET"}}`, get, true},
		{`{"name": ":method", "stringMatch": {"exact": "GET"}}`, noQuery, false},
		{`{"name": ":method", "stringMatch": {"exact": "GET"}}`, client, true}, // "" is GET
		{`{"name": ":authority", "stringMatch": {"exact": "reviews:9080"}}`, get, true},
		{`{"name": "Host", "stringMatch": {"exact": "reviews:9080"}}`, get, true},
		{`{"name": ":authority", "stringMatch": {"exact": "api.example.com"}}`, client, true},
		{`{"name": ":authority", "presentMatch": true}`, noQuery, false},
		{`{"name": ":path", "stringMatch": {"exact": "/a%2Fb?x=1"}}`, get, true},
		{`{"name": ":path", "stringMatch": {"exact": "/p"}}`, noQuery, true},
		{`{"name": ":path", "stringMatch": {"exact": "/"}}`, client, true},
		{`{"name": ":scheme", "stringMatch": {"exact": "http"}}`, get, true},
		{`{"name": ":scheme", "stringMatch": {"exact": "https"}}`, secure, true},
		{`{"name": ":scheme", "stringMatch": {"exact": "https"}}`, client, true},
	}
	for _, tc := range cases {
		m, err := CompileHeader(parse(t, tc.config, &routev3.HeaderMatcher{}))
		if err != nil {
			t.Fatalf("%s: %v", tc.config, err)
		}
		if got := m.Match(tc.r); got != tc.want {
			t.Errorf("%s on %s %s (host %q): match = %v, want %v", tc.config, tc.r.Method, tc.r.URL, tc.r.Host, got, tc.want)
		}
	}
}

// TestHeaderErrors checks what makes the proxy NACK a HeaderMatcher.
func TestHeaderErrors(t *testing.T) {
	cases := []struct {
		name, config string
		want         string
	}{
		{"range_match", `{"name": "x-n", "rangeMatch": {"start": 1, "end": 5}}`, `unsupported header matcher field "range_match"`},
		{"unknown pseudo-header", `{"name": ":status", "presentMatch": true}`, `unsupported pseudo-header ":status"`},
		{"no name", `{"presentMatch": true}`, `invalid header name ""`},
		{"invalid name", `{"name": "a b", "presentMatch": true}`, `invalid header name "a b"`},
		{"empty legacy prefix", `{"name": "x", "prefixMatch": ""}`, "empty prefix, suffix or contains pattern"},
		{"empty legacy suffix", `{"name": "x", "suffixMatch": ""}`, "empty prefix, suffix or contains pattern"},
		{"empty legacy contains", `{"name": "x", "containsMatch": ""}`, "empty prefix, suffix or contains pattern"},
		{"empty string_match prefix", `{"name": "x", "stringMatch": {"prefix": ""}}`, "string_match: empty prefix, suffix or contains pattern"},
		{"string_match without pattern", `{"name": "x", "stringMatch": {}}`,
			"string_match: a match pattern (exact, prefix, suffix, contains or safe_regex) is required"},
		{"bad string_match regex", `{"name": "x", "stringMatch": {"safeRegex": {"regex": "("}}}`, `string_match: safe_regex: invalid regex "(": ...`},
		{"bad legacy regex", `{"name": "x", "safeRegexMatch": {"regex": "*"}}`, `safe_regex_match: invalid regex "*": ...`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileHeader(parse(t, tc.config, &routev3.HeaderMatcher{}))
			checkError(t, err, tc.want)
		})
	}
	t.Run("unknown field", func(t *testing.T) {
		_, err := CompileHeader(withUnknownField(&routev3.HeaderMatcher{Name: "x"}))
		checkError(t, err, "header matcher has fields unknown to this proxy")
	})
}

// TestMatchDoesNotAllocate guards the hot path both the router and RBAC
// run per request.
func TestMatchDoesNotAllocate(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://reviews:9080/reviews/0", nil)
	r.Header.Set("End-User", "Jason")
	for _, config := range []string{
		`{"name": "end-user", "stringMatch": {"exact": "jason", "ignoreCase": true}}`,
		`{"name": "end-user", "stringMatch": {"contains": "SO", "ignoreCase": true}}`,
		`{"name": "end-user", "stringMatch": {"safeRegex": {"regex": "J.*"}}}`,
		`{"name": ":authority", "stringMatch": {"suffix": ":9080"}}`,
		`{"name": ":path", "stringMatch": {"prefix": "/reviews"}}`,
		`{"name": "x-missing", "presentMatch": true, "invertMatch": true}`,
	} {
		m, err := CompileHeader(parse(t, config, &routev3.HeaderMatcher{}))
		if err != nil {
			t.Fatal(err)
		}
		if !m.Match(r) {
			t.Errorf("%s does not match", config)
		}
		if n := testing.AllocsPerRun(100, func() { m.Match(r) }); n != 0 {
			t.Errorf("%s: %v allocations per Match", config, n)
		}
	}
}
