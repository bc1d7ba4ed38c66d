package router

import (
	"net/http"
	"testing"
)

func TestVirtualHostSelection(t *testing.T) {
	tbl := mustCompile(t, `
name: "9080"
virtualHosts:
- name: exact
  domains: [www.foo.com]
  routes: &r [{match: {prefix: /}, route: {cluster: c}}]
- name: suffix-short
  domains: ["*.com"]
  routes: *r
- name: suffix-long
  domains: ["*.foo.com"]
  routes: *r
- name: suffix-dash
  domains: ["*-bar.foo.com"]
  routes: *r
- name: prefix-short
  domains: ["api.*"]
  routes: *r
- name: prefix-long
  domains: ["api.foo.*"]
  routes: *r
- name: reviews
  domains: [reviews.bookinfo.svc.cluster.local, "reviews.bookinfo.svc.cluster.local:9080", reviews, "reviews:9080", "10.96.0.7:9080"]
  routes: *r
- name: ipv6
  domains: ["[::1]:9080"]
  routes: *r
- name: any
  domains: ["*"]
  routes: *r
`)
	for _, tc := range []struct{ host, want string }{
		{"www.foo.com", "exact"},
		{"WWW.Foo.COM", "exact"},
		{"a.foo.com", "suffix-long"},
		{"a.b.foo.com", "suffix-long"},
		{"baz-bar.foo.com", "suffix-dash"}, // the longest suffix wildcard wins
		{"x.com", "suffix-short"},
		{".foo.com", "suffix-short"}, // the wildcard needs at least one character
		{"api.foo.org", "prefix-long"},
		{"api.bar", "prefix-short"},
		{"api.foo.com", "suffix-long"}, // suffix wildcards come before prefix wildcards
		{"reviews", "reviews"},
		{"reviews:9080", "reviews"},
		{"Reviews:9080", "reviews"},
		{"reviews.bookinfo.svc.cluster.local:9080", "reviews"},
		{"10.96.0.7:9080", "reviews"},
		{"10.96.0.7", "any"},
		{"reviews:9081", "any"}, // ports are part of the domain unless ignored
		{"[::1]:9080", "ipv6"},
		{"other", "any"},
		{"", "any"},
	} {
		d, ok := tbl.Route(newRequest(http.MethodGet, "/", "host", tc.host))
		if !ok || d.VirtualHost != tc.want {
			t.Errorf("host %q: got %+v, %v; want virtual host %s", tc.host, d, ok, tc.want)
		}
	}
}

func TestNoVirtualHost(t *testing.T) {
	tbl := mustCompile(t, `
name: r
virtualHosts:
- name: only
  domains: [only.example]
  routes: [{match: {prefix: /}, route: {cluster: c}}]
`)
	if _, ok := tbl.Route(newRequest(http.MethodGet, "http://other.example/")); ok {
		t.Fatal("matched a host with no virtual host")
	}
	d, ok := tbl.Route(newRequest(http.MethodGet, "http://ONLY.example/"))
	if !ok || d.VirtualHost != "only" || d.Cluster != "c" {
		t.Fatalf("got %+v, %v", d, ok)
	}
}

func TestIgnorePortInHostMatching(t *testing.T) {
	tbl := mustCompile(t, `
name: http.8080
ignorePortInHostMatching: true
virtualHosts:
- name: bookinfo
  domains: [bookinfo.example.com]
  routes: [{match: {prefix: /}, route: {cluster: productpage}}]
- name: v6
  domains: ["[::1]"]
  routes: [{match: {prefix: /}, route: {cluster: v6}}]
`)
	for _, tc := range []struct{ host, want string }{
		{"bookinfo.example.com:8080", "productpage"},
		{"bookinfo.example.com", "productpage"},
		{"[::1]:80", "v6"},
		{"[::1]", "v6"},
	} {
		d, ok := tbl.Route(newRequest(http.MethodGet, "/", "host", tc.host))
		if !ok || d.Cluster != tc.want {
			t.Errorf("host %q: got %+v %v, want %s", tc.host, d, ok, tc.want)
		}
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"a:80":      "a",
		"a":         "a",
		"a:":        "a:",
		"a:b":       "a:b",
		"[::1]:443": "[::1]",
		"[::1]":     "[::1]",
	} {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}
