package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadReader: any input either fails with an error or yields objects
// that survive an Encode/Decode round trip. It must never panic.
func FuzzLoadReader(f *testing.F) {
	files, _ := filepath.Glob("testdata/tutorial/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(kubeObjects)
	f.Add("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n")
	f.Add(`{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"a"}}`)
	f.Fuzz(func(t *testing.T, input string) {
		objs, _, err := LoadReader("fuzz.yaml", strings.NewReader(input), "")
		if err != nil {
			return
		}
		for _, o := range objs {
			doc, err := Encode(o)
			if err != nil {
				t.Fatalf("loaded object does not encode: %v", err)
			}
			back, err := Decode(doc)
			if err != nil {
				t.Fatalf("encoded object does not decode: %v", err)
			}
			if !ContentEqual(o, back) {
				t.Fatalf("round trip changed %s", o.Key())
			}
		}
	})
}
