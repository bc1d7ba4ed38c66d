package analyze

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/skein-mesh/skein/internal/config"
)

// Resource is where an analysed object came from, for messages: its kind,
// namespace and name, and (for files) the file, its first line and the
// line of every field.
type Resource struct {
	Kind      string
	Namespace string
	Name      string
	File      string
	Line      int
	fields    map[string]int // "spec.gateways[0]" -> line
}

// FriendlyName is istioctl's origin: "Kind ns/name", or "Kind name" for
// cluster-scoped resources.
func (r *Resource) FriendlyName() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// FieldLine is the line of a field path in the resource's file, or 0.
func (r *Resource) FieldLine(path string) int {
	if r == nil {
		return 0
	}
	return r.fields[path]
}

// Entry is one object under analysis.
type Entry struct {
	Obj *config.Object
	Res *Resource
}

// Input is the set of objects analysed together: live config merged with
// files, files winning on the same key, as istioctl merges them.
type Input struct {
	byKey  map[config.Key]*Entry
	schema []Message // IST0106 found while loading
}

// NewInput returns an empty input.
func NewInput() *Input { return &Input{byKey: map[config.Key]*Entry{}} }

// AddObject adds a live object (no file); it replaces one with the same key.
func (in *Input) AddObject(obj *config.Object) {
	in.add(obj, &Resource{Kind: obj.GVK.Kind, Namespace: obj.Meta.Namespace, Name: obj.Meta.Name})
}

func (in *Input) add(obj *config.Object, res *Resource) {
	key := obj.Key()
	// A file's copy replaces the live one, dropping the live copy's IST0106.
	kept := in.schema[:0]
	for _, m := range in.schema {
		if m.Resource.Kind != key.Kind || m.Resource.Namespace != key.Namespace || m.Resource.Name != key.Name {
			kept = append(kept, m)
		}
	}
	in.schema = kept
	in.byKey[key] = &Entry{Obj: obj, Res: res}
	errs, _ := config.ValidateAll(obj)
	for _, err := range errs {
		in.schema = append(in.schema, Message{Type: SchemaValidationError, Params: []any{schemaText(err)}, Resource: res})
	}
}

// schemaText keeps a validation error's field and message, without the
// file location that the message's reference already carries.
func schemaText(err error) string {
	if fe, ok := err.(*config.FieldError); ok {
		if fe.Field != "" {
			return fe.Field + ": " + fe.Message
		}
		return fe.Message
	}
	return err.Error()
}

// List returns every entry of kind, sorted by namespace and name.
func (in *Input) List(kind string) []*Entry {
	var out []*Entry
	for k, e := range in.byKey {
		if k.Kind == kind {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Obj.Meta.Namespace != out[j].Obj.Meta.Namespace {
			return out[i].Obj.Meta.Namespace < out[j].Obj.Meta.Namespace
		}
		return out[i].Obj.Meta.Name < out[j].Obj.Meta.Name
	})
	return out
}

// Get returns one entry.
func (in *Input) Get(kind, namespace, name string) (*Entry, bool) {
	e, ok := in.byKey[config.Key{Kind: kind, Namespace: namespace, Name: name}]
	return e, ok
}

// Len is the number of objects.
func (in *Input) Len() int { return len(in.byKey) }

// ExpandPaths turns file and directory arguments into the files to read,
// as istioctl analyze does: .yaml, .yml and .json files; directories'
// subdirectories only with recursive. Skipped files are reported by skip.
func ExpandPaths(args []string, recursive bool, skip func(path string)) ([]string, error) {
	var files []string
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		info, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if validExt(a) {
				files = append(files, a)
			} else {
				skip(a)
			}
			continue
		}
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != a && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if validExt(p) {
				files = append(files, p)
			} else {
				skip(p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

func validExt(p string) bool {
	switch filepath.Ext(p) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// AddFile reads every document of one file into the input. Kinds Skein
// does not know are skipped, as istioctl skips them; a document that does
// not parse is returned as an error naming file and line, and one that
// does not decode becomes an IST0106 message.
func (in *Input) AddFile(name string, data []byte, defaultNamespace string) []error {
	var errs []error
	for _, d := range splitDocs(data) {
		var node yamlv3.Node
		if err := yamlv3.Unmarshal([]byte(d.text), &node); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", name, d.line, err))
			continue
		}
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(d.text), &doc); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", name, d.line, err))
			continue
		}
		if doc == nil {
			continue
		}
		apiVersion, _ := doc["apiVersion"].(string)
		kind, _ := doc["kind"].(string)
		schema, ok := config.SchemaForGVK(apiVersion, kind)
		if !ok {
			continue
		}
		res := &Resource{Kind: kind, File: name, Line: d.line, fields: map[string]int{}}
		if len(node.Content) > 0 {
			res.Line = d.line + node.Content[0].Line - 1
			walkLines(node.Content[0], "", d.line-1, res.fields)
		}
		meta, _ := doc["metadata"].(map[string]any)
		res.Name, _ = meta["name"].(string)
		if schema.Namespaced {
			res.Namespace, _ = meta["namespace"].(string)
			if res.Namespace == "" {
				res.Namespace = defaultNamespace
				if meta != nil {
					meta["namespace"] = defaultNamespace
				}
			}
		} else if meta != nil {
			delete(meta, "namespace")
		}
		obj, err := config.Decode(doc)
		if err != nil {
			in.schema = append(in.schema, Message{Type: SchemaValidationError, Params: []any{err.Error()}, Resource: res})
			continue
		}
		obj.SyncMeta()
		in.add(obj, res)
	}
	return errs
}

type docText struct {
	line int // 1-based line where the document's text starts
	text string
}

// splitDocs cuts a file at "---" lines, remembering where each part starts.
func splitDocs(data []byte) []docText {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var (
		docs  []docText
		cur   strings.Builder
		start = 1
	)
	for i, line := range strings.SplitAfter(string(data), "\n") {
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- ") {
			docs = append(docs, docText{line: start, text: cur.String()})
			cur.Reset()
			start = i + 2
			continue
		}
		cur.WriteString(line)
	}
	docs = append(docs, docText{line: start, text: cur.String()})
	out := docs[:0]
	for _, d := range docs {
		if strings.TrimSpace(d.text) != "" {
			out = append(out, d)
		}
	}
	return out
}

// walkLines records the line of every mapping value and sequence item
// under n, keyed by path ("spec.http[0].route[1].destination.host").
func walkLines(n *yamlv3.Node, path string, offset int, into map[string]int) {
	switch n.Kind {
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			into[p] = k.Line + offset
			walkLines(v, p, offset, into)
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			into[p] = c.Line + offset
			walkLines(c, p, offset, into)
		}
	}
}
