package confparse

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// allowed are the proxy files that decode or compile something other
// than config, on purpose, at request or connection time.
var allowed = map[string]string{
	"filters/metadataexchange/exchange.go": "the peer's metadata, read from each connection",
	"admin/admin.go":                       "the admin API's ?filter= regex, per admin request",
}

// TestOneParseDoor keeps confparse's counts complete: no proxy code may
// decode an anypb.Any or compile a regexp except through confparse, or the
// request-path test could not see it.
func TestOneParseDoor(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "internal/confparse/") || allowed[rel] != "" {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			pkg, _ := sel.X.(*ast.Ident)
			switch {
			case name == "UnmarshalTo" || name == "UnmarshalNew",
				pkg != nil && pkg.Name == "regexp" && strings.HasPrefix(name, "Compile"),
				pkg != nil && pkg.Name == "regexp" && strings.HasPrefix(name, "MustCompile"):
				t.Errorf("%s: %s bypasses confparse", fset.Position(sel.Pos()), name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
