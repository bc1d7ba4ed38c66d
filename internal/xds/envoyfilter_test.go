package xds_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/model"
	"github.com/skein-mesh/skein/internal/xds"
)

// TestEnvoyFilterGolden applies each testdata/envoyfilter/<case>.yaml on top
// of Bookinfo (with the tutorial routing) and compares what the patches changed, as a per-resource
// line diff against the unpatched translation, with
// testdata/envoyfilter/<case>.golden.
func TestEnvoyFilterGolden(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "envoyfilter", "*.yaml"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	proxies := map[string]*model.Proxy{"productpage": productpage, "reviews-v1": reviewsV1, "ingress": ingress}
	for _, file := range cases {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// The first line names the proxies: "# proxies: productpage ingress".
			first, _, _ := strings.Cut(string(src), "\n")
			names, ok := strings.CutPrefix(first, "# proxies: ")
			if !ok {
				t.Fatalf("%s: first line must be `# proxies: <name>...`", file)
			}
			base := pushContext(t, "bookinfo-mesh.yaml", "tutorial-routing.yaml")
			// Objects created by one apply share a creation time, so EnvoyFilters
			// of a case apply in name order. The base is Bookinfo with its Gateway
			// and the tutorial routing.
			patched := pushContext(t, "bookinfo-mesh.yaml", "tutorial-routing.yaml", filepath.Join("envoyfilter", filepath.Base(file)))
			var out strings.Builder
			for _, pname := range strings.Fields(names) {
				proxy := proxies[pname]
				if proxy == nil {
					t.Fatalf("unknown proxy %q", pname)
				}
				fmt.Fprintf(&out, "=== %s\n", pname)
				out.WriteString(resourceDiff(t, xds.Generate(base, proxy), xds.Generate(patched, proxy)))
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/xds -update)", err)
			}
			if string(want) != out.String() {
				t.Errorf("differs from %s; run `go test ./internal/xds -update` and review the diff\ngot:\n%s", golden, out.String())
			}
		})
	}
}

// resourceDiff lists, per resource type, the resources patched added,
// removed or changed (as a line diff of their YAML), then the warnings.
func resourceDiff(t *testing.T, base, patched *xds.Resources) string {
	t.Helper()
	var out strings.Builder
	kinds := []struct {
		kind string
		a, b []proto.Message
	}{
		{"listener", msgs(base.Listeners), msgs(patched.Listeners)},
		{"route", msgs(base.Routes), msgs(patched.Routes)},
		{"cluster", msgs(base.Clusters), msgs(patched.Clusters)},
		{"endpoints", msgs(base.Endpoints), msgs(patched.Endpoints)},
	}
	for _, k := range kinds {
		before, after := byName(t, k.a), byName(t, k.b)
		var names []string
		for n := range before {
			names = append(names, n)
		}
		for n := range after {
			if _, ok := before[n]; !ok {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			a, inA := before[n]
			b, inB := after[n]
			switch {
			case !inB:
				fmt.Fprintf(&out, "--- %s %s removed\n", k.kind, n)
			case !inA:
				fmt.Fprintf(&out, "+++ %s %s added\n%s", k.kind, n, indent(b, "+ "))
			case a != b:
				fmt.Fprintf(&out, "~~~ %s %s changed\n%s", k.kind, n, lineDiff(a, b))
			}
		}
		if order(k.a, after) != order(k.b, before) {
			fmt.Fprintf(&out, "~~~ %s order changed\n", k.kind)
		}
	}
	for _, w := range patched.Warnings {
		if !slices.Contains(base.Warnings, w) {
			fmt.Fprintf(&out, "!!! %s\n", w)
		}
	}
	return out.String()
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// order lists the names of ms that are also in other, in ms's order.
func order(ms []proto.Message, other map[string]string) string {
	var names []string
	for _, m := range ms {
		if _, ok := other[resourceName(m)]; ok {
			names = append(names, resourceName(m))
		}
	}
	return strings.Join(names, ",")
}

func byName(t *testing.T, ms []proto.Message) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range ms {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(v)
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			t.Fatal(err)
		}
		out[resourceName(m)] = string(y)
	}
	return out
}

func indent(s, prefix string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			out.WriteString(prefix + l)
		}
	}
	return out.String()
}

// lineDiff is a minimal line diff (longest common subsequence) showing
// changed lines with two lines of context; "..." separates hunks.
func lineDiff(a, b string) string {
	x, y := strings.Split(strings.TrimSuffix(a, "\n"), "\n"), strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			lines = append(lines, line{' ', x[i]})
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', x[i]})
			i++
		default:
			lines = append(lines, line{'+', y[j]})
			j++
		}
	}
	const context = 2
	show := make([]bool, len(lines))
	for k, l := range lines {
		if l.op != ' ' {
			for c := max(0, k-context); c <= min(len(lines)-1, k+context); c++ {
				show[c] = true
			}
		}
	}
	var out strings.Builder
	gap := false
	for k, l := range lines {
		if !show[k] {
			gap = true
			continue
		}
		if gap && out.Len() > 0 {
			out.WriteString("  ...\n")
		}
		gap = false
		fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
	}
	return out.String()
}

// TestEnvoyFiltersSharedBetweenProxies: a push compiles each EnvoyFilter
// once and every proxy it selects applies the same compiled patches, on
// many goroutines at once. Applying must leave them as they were (run with
// -race), and a proxy gets the same config however often it is generated.
func TestEnvoyFiltersSharedBetweenProxies(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "envoyfilter", "*.yaml"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	files := []string{"bookinfo-mesh.yaml", "tutorial-routing.yaml", "envoyfilter-shared.yaml"}
	for _, c := range cases {
		files = append(files, filepath.Join("envoyfilter", filepath.Base(c)))
	}
	pc := pushContext(t, files...)
	proxies := []*model.Proxy{productpage, reviewsV1, ingress}
	before := map[*model.EnvoyFilterPatch]proto.Message{}
	for _, p := range proxies {
		for _, w := range pc.EnvoyFilters(p) {
			for _, patch := range w.Patches {
				if patch.Value != nil {
					before[patch] = proto.Clone(patch.Value)
				}
			}
		}
	}
	if len(before) == 0 {
		t.Fatal("no compiled patch values")
	}
	first := make([][]byte, len(proxies))
	for i, p := range proxies {
		first[i] = render(t, xds.Generate(pc, p))
	}
	var wg sync.WaitGroup
	again := make([][][]byte, 4)
	for g := range again {
		again[g] = make([][]byte, len(proxies))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, p := range proxies {
				again[g][i] = render(t, xds.Generate(pc, p))
			}
		}()
	}
	wg.Wait()
	for g := range again {
		for i := range proxies {
			if string(again[g][i]) != string(first[i]) {
				t.Errorf("proxy %s: generation %d differs from the first", proxies[i].ID, g+2)
			}
		}
	}
	for patch, want := range before {
		if !proto.Equal(patch.Value, want) {
			t.Errorf("EnvoyFilter %s patch %d: applying it changed the compiled value", patch.Source, patch.Index)
		}
	}
}
