package rbac

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	expr "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

func viewer(action rbacv3.RBAC_Action) *rbacv3.RBAC {
	return &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{"viewer": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"}}}}}}},
		Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/a/sa/b"}}}}}},
	}}}
}

func request(method, principal string) *filters.Request {
	return &filters.Request{HTTP: httptest.NewRequest(method, "http://x/p", nil), Conn: &filters.Conn{
		Source: netip.MustParseAddrPort("127.0.0.1:1000"), PeerPrincipal: principal}}
}

func TestActions(t *testing.T) {
	cases := []struct {
		action        rbacv3.RBAC_Action
		method, princ string
		allowed       bool
	}{
		{rbacv3.RBAC_ALLOW, "GET", "cluster.local/ns/a/sa/b", true},
		{rbacv3.RBAC_ALLOW, "GET", "cluster.local/ns/a/sa/c", false},
		{rbacv3.RBAC_ALLOW, "POST", "cluster.local/ns/a/sa/b", false},
		{rbacv3.RBAC_DENY, "GET", "cluster.local/ns/a/sa/b", false},
		{rbacv3.RBAC_DENY, "POST", "cluster.local/ns/a/sa/b", true},
		{rbacv3.RBAC_LOG, "GET", "cluster.local/ns/a/sa/b", true},
	}
	for _, tc := range cases {
		st := stats.NewStore()
		f, err := NewHTTPFilter(&rbacfilterv3.RBAC{Rules: viewer(tc.action), RulesStatPrefix: "p."}, Options{Stats: st})
		if err != nil {
			t.Fatal(err)
		}
		reply := f.OnRequest(request(tc.method, tc.princ))
		if (reply == nil) != tc.allowed {
			t.Errorf("%s %s %s: reply %+v, want allowed=%v", tc.action, tc.method, tc.princ, reply, tc.allowed)
		}
		denied := st.Counter("http.rbac.p.denied").Value()
		if (denied == 1) == tc.allowed {
			t.Errorf("%s %s %s: denied counter = %d", tc.action, tc.method, tc.princ, denied)
		}
		if tc.action == rbacv3.RBAC_LOG && st.Counter("http.rbac.p.logged").Value() != 1 {
			t.Errorf("LOG: logged counter not incremented")
		}
	}
	// Shadow rules never deny.
	f, _ := NewHTTPFilter(&rbacfilterv3.RBAC{ShadowRules: viewer(rbacv3.RBAC_ALLOW)}, Options{})
	if r := f.OnRequest(request("POST", "")); r != nil {
		t.Errorf("shadow rules denied: %+v", r)
	}
}

func TestUnsupportedFieldsAreRejected(t *testing.T) {
	withCondition := viewer(rbacv3.RBAC_ALLOW)
	withCondition.Policies["viewer"].Condition = &expr.Expr{}
	_, err := NewHTTPFilter(&rbacfilterv3.RBAC{Rules: withCondition}, Options{})
	if err == nil || !strings.Contains(err.Error(), "condition") {
		t.Errorf("condition accepted: %v", err)
	}
	_, err = Compile(&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UriTemplate{}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}}}})
	if err == nil || !strings.Contains(err.Error(), "uri_template") {
		t.Errorf("uri_template accepted: %v", err)
	}
}

// TestEvaluationDoesNotAllocate guards the hot path.
func TestEvaluationDoesNotAllocate(t *testing.T) {
	e, err := Compile(viewer(rbacv3.RBAC_ALLOW))
	if err != nil {
		t.Fatal(err)
	}
	req := request("GET", "cluster.local/ns/a/sa/b")
	if n := testing.AllocsPerRun(100, func() { e.Allowed(req) }); n != 0 {
		t.Errorf("Allowed allocates %v times per request", n)
	}
}

// TestStatsUnderConnectionManager checks Envoy's stat names once the
// connection manager hands the filter its scope.
func TestStatsUnderConnectionManager(t *testing.T) {
	st := stats.NewStore()
	f, err := NewHTTPFilter(&rbacfilterv3.RBAC{Rules: viewer(rbacv3.RBAC_ALLOW)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.UseStats(st, "http.inbound_0.0.0.0_9080.")
	f.OnRequest(request("POST", "cluster.local/ns/a/sa/b"))
	f.OnRequest(request("GET", "cluster.local/ns/a/sa/b"))
	if d, a := st.Counter("http.inbound_0.0.0.0_9080.rbac.denied").Value(), st.Counter("http.inbound_0.0.0.0_9080.rbac.allowed").Value(); d != 1 || a != 1 {
		t.Errorf("denied=%d allowed=%d, want 1 and 1", d, a)
	}
}
