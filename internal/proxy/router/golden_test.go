package router

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current router")

// goldenFile is a testdata/*.yaml: a RouteConfiguration (protojson in
// YAML) and requests to route through it.
type goldenFile struct {
	RouteConfig json.RawMessage `json:"routeConfig"`
	Requests    []goldenRequest `json:"requests"`
}

type goldenRequest struct {
	Name    string            `json:"name"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
}

// goldenResult is what a request's routing decision looks like in a
// testdata/*.golden file.
type goldenResult struct {
	Name        string `json:"name"`
	Request     string `json:"request"`
	Matched     bool   `json:"matched"`
	VirtualHost string `json:"virtualHost,omitempty"`
	Route       string `json:"route,omitempty"`
	Cluster     string `json:"cluster,omitempty"`
	// Weights lists every cluster a weighted route can pick, with the
	// share of the weight range it owns; Cluster is then the first one.
	Weights         map[string]uint64   `json:"weights,omitempty"`
	Timeout         string              `json:"timeout,omitempty"`
	DirectResponse  *DirectResponse     `json:"directResponse,omitempty"`
	Redirect        *Redirect           `json:"redirect,omitempty"`
	Upstream        *goldenUpstream     `json:"upstream,omitempty"`
	ResponseHeaders map[string][]string `json:"responseHeaders,omitempty"`
}

// goldenUpstream is the request after Decision.ApplyRequest.
type goldenUpstream struct {
	Host    string              `json:"host"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers,omitempty"`
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.yaml (%v)", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			got := runGolden(t, file)
			goldenPath := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the router's decisions (run with -update to accept):\n--- got\n%s\n--- want\n%s", goldenPath, got, want)
			}
		})
	}
}

func runGolden(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var gf goldenFile
	if err := yaml.Unmarshal(raw, &gf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal(gf.RouteConfig, rc); err != nil {
		t.Fatalf("%s: routeConfig: %v", file, err)
	}
	tbl, err := Compile(rc, nil)
	if err != nil {
		t.Fatalf("%s: Compile: %v", file, err)
	}
	results := make([]goldenResult, 0, len(gf.Requests))
	for _, gr := range gf.Requests {
		results = append(results, routeGolden(t, tbl, gr))
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func routeGolden(t *testing.T, tbl *Table, gr goldenRequest) goldenResult {
	newReq := func() *http.Request {
		var hdrs []string
		for k, v := range gr.Headers {
			hdrs = append(hdrs, k, v)
		}
		return newRequest(gr.Method, gr.URL, hdrs...)
	}
	res := goldenResult{Name: gr.Name, Request: gr.Method + " " + gr.URL}

	// Enumerate a weighted route's weight range by pinning the picker.
	var total uint64
	tbl.pick = func(n, _ uint64) uint64 { total = n; return 0 }
	defer func() { tbl.pick = lowDiscrepancyPick }()
	r := newReq()
	d, ok := tbl.Route(r)
	if !ok {
		return res
	}
	if total > 0 {
		if total > 100000 {
			t.Fatalf("%s: weight total %d too large to enumerate", gr.Name, total)
		}
		res.Weights = map[string]uint64{}
		for v := range total {
			tbl.pick = func(_, _ uint64) uint64 { return v }
			wd, _ := tbl.Route(newReq())
			res.Weights[wd.Cluster]++
		}
	}
	res.Matched = true
	res.VirtualHost, res.Route, res.Cluster = d.VirtualHost, d.RouteName, d.Cluster
	res.DirectResponse, res.Redirect = d.DirectResponse, d.Redirect
	if d.DirectResponse == nil && d.Redirect == nil {
		res.Timeout = d.Timeout.String()
		d.ApplyRequest(r)
		res.Upstream = &goldenUpstream{Host: r.Host, URI: r.URL.RequestURI(), Headers: r.Header}
		if len(r.Header) == 0 {
			res.Upstream.Headers = nil
		}
	}
	resp := http.Header{}
	d.ApplyResponse(resp)
	if len(resp) > 0 {
		res.ResponseHeaders = resp
	}
	return res
}
