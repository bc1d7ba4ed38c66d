package proxy

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestProxyImportsOnlyItself holds the architecture's rule: the data plane
// knows Envoy protos, never the control plane's packages.
func TestProxyImportsOnlyItself(t *testing.T) {
	const module = "github.com/skein-mesh/skein/"
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, module) && !strings.HasPrefix(p, module+"internal/proxy") {
				t.Errorf("%s imports %s: the proxy may only import internal/proxy/...", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
