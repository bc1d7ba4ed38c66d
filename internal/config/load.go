package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// LoadFiles reads objects from paths: files, directories (their *.yaml,
// *.yml and *.json files in name order, not recursively) and "-" for stdin.
// Namespaced objects without metadata.namespace get defaultNamespace
// ("default" when empty); an explicit namespace that differs from a
// non-empty defaultNamespace is an error, as in kubectl.
//
// Every object is decoded and validated; all errors are returned joined and
// then no objects are returned. Warnings are returned either way.
func LoadFiles(paths []string, defaultNamespace string) ([]*Object, []Warning, error) {
	return LoadFilesFrom(os.Stdin, paths, defaultNamespace)
}

// LoadFilesFrom is LoadFiles reading "-" from stdin.
func LoadFilesFrom(stdin io.Reader, paths []string, defaultNamespace string) ([]*Object, []Warning, error) {
	objs, warns, errs := LoadFilesEach(stdin, paths, defaultNamespace)
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	return objs, warns, nil
}

// LoadFilesEach is LoadFilesFrom that keeps going past bad documents, as
// kubectl apply does: it returns every valid object and one error per
// problem (each naming its file, document, resource and field).
func LoadFilesEach(stdin io.Reader, paths []string, defaultNamespace string) ([]*Object, []Warning, []error) {
	var (
		objs  []*Object
		warns []Warning
		errs  []error
	)
	add := func(o []*Object, w []Warning, e []error) {
		objs, warns, errs = append(objs, o...), append(warns, w...), append(errs, e...)
	}
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, fmt.Errorf("read -: %w", err))
				continue
			}
			add(loadBytesEach("-", data, defaultNamespace))
			continue
		}
		files, err := expandPath(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			add(loadBytesEach(f, data, defaultNamespace))
		}
	}
	return objs, warns, errs
}

// LoadReader reads every document from r; name is used in messages.
func LoadReader(name string, r io.Reader, defaultNamespace string) ([]*Object, []Warning, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	return loadBytes(name, data, defaultNamespace)
}

// expandPath turns a file or directory argument into the files to read.
func expandPath(p string) ([]string, error) {
	info, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("the path %q does not exist", p)
	}
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p) // sorted by name
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	return files, nil
}

func loadBytes(name string, data []byte, defaultNamespace string) ([]*Object, []Warning, error) {
	objs, warns, errs := loadBytesEach(name, data, defaultNamespace)
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	return objs, warns, nil
}

// loadBytesEach returns the valid objects of data and an error for each
// problem; an invalid object is left out, its neighbours are not.
func loadBytesEach(name string, data []byte, defaultNamespace string) ([]*Object, []Warning, []error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	docs, warns := splitDocuments(name, data)
	var (
		objs []*Object
		errs []error
	)
	for _, d := range docs {
		ctx := docContext{file: name, document: d.number}
		if d.err != nil {
			errs = append(errs, d.err)
			continue
		}
		if d.value == nil {
			continue // an empty document
		}
		decoded, w, e := decodeDocument(ctx, d.value)
		warns, errs = append(warns, w...), append(errs, e...)
		for _, obj := range decoded {
			objCtx := ctx
			objCtx.kind, objCtx.name = obj.GVK.Kind, obj.Meta.Name
			if err := applyNamespace(objCtx, obj, defaultNamespace); err != nil {
				errs = append(errs, err)
				continue
			}
			vErrs, vWarns := ValidateAll(obj)
			for _, err := range vErrs {
				var fe *FieldError
				if errors.As(err, &fe) {
					fe.File, fe.Document = name, d.number
				}
				errs = append(errs, err)
			}
			for _, w := range vWarns {
				w.File, w.Document = name, d.number
				warns = append(warns, w)
			}
			if len(vErrs) == 0 {
				objs = append(objs, obj)
			}
		}
	}
	return objs, warns, errs
}

// applyNamespace defaults the namespace of namespaced kinds and clears it
// for cluster-scoped ones, like kubectl.
func applyNamespace(ctx docContext, obj *Object, defaultNamespace string) error {
	schema, _ := SchemaForGVK(obj.GVK.APIVersion(), obj.GVK.Kind)
	switch {
	case schema == nil || !schema.Namespaced:
		obj.Meta.Namespace = ""
	case obj.Meta.Namespace == "":
		obj.Meta.Namespace = defaultNamespace
		if obj.Meta.Namespace == "" {
			obj.Meta.Namespace = "default"
		}
	case defaultNamespace != "" && obj.Meta.Namespace != defaultNamespace:
		return ctx.fieldError("metadata.namespace",
			"the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.",
			obj.Meta.Namespace, defaultNamespace, obj.Meta.Namespace)
	}
	obj.SyncMeta()
	return nil
}

// rawDoc is one document of a file: its parsed value, or why it failed.
type rawDoc struct {
	number int // 1-based, counting non-empty documents
	value  map[string]any
	err    error
}

// splitDocuments cuts data into documents. JSON input (starting with '{')
// may hold several concatenated objects. YAML is split at "---" lines and,
// for a tutorial our users copy, also at every column-0 "apiVersion:" line
// of a document that has more than one of them.
func splitDocuments(name string, data []byte) ([]rawDoc, []Warning) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		if docs, ok := splitJSON(name, data); ok {
			return docs, nil
		}
	}
	var (
		docs  []rawDoc
		warns []Warning
	)
	for _, chunk := range splitYAMLSeparators(data) {
		parts, apiLines := splitAtAPIVersion(chunk)
		if len(parts) > 1 {
			warns = append(warns, Warning{File: name, Document: len(docs) + 1, Message: fmt.Sprintf(
				"found %d resources without a \"---\" separator between them (apiVersion at lines %s); treating each as its own document",
				len(parts), apiLines)})
		}
		for _, part := range parts {
			if isBlankYAML(part.text) {
				continue
			}
			d := rawDoc{number: len(docs) + 1}
			d.value, d.err = parseYAMLDoc(name, d.number, part)
			if d.value == nil && d.err == nil {
				continue
			}
			docs = append(docs, d)
		}
	}
	return docs, warns
}

// yamlChunk is part of a file and the 1-based line where it starts.
type yamlChunk struct {
	line int
	text string
}

func splitYAMLSeparators(data []byte) []yamlChunk {
	lines := strings.SplitAfter(string(data), "\n")
	var (
		chunks []yamlChunk
		cur    strings.Builder
		start  = 1
	)
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "---"); ok &&
			(rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			chunks = append(chunks, yamlChunk{line: start, text: cur.String()})
			cur.Reset()
			start = i + 1
			// Content after "--- " belongs to the new document.
			if r := strings.TrimSpace(rest); r != "" && !strings.HasPrefix(r, "#") {
				cur.WriteString(r + "\n")
			} else {
				start = i + 2
			}
			continue
		}
		cur.WriteString(line)
	}
	return append(chunks, yamlChunk{line: start, text: cur.String()})
}

// splitAtAPIVersion cuts a chunk at every column-0 "apiVersion:" line when
// it has two or more; it also returns those lines' numbers for messages.
func splitAtAPIVersion(c yamlChunk) ([]yamlChunk, string) {
	lines := strings.SplitAfter(c.text, "\n")
	var starts []int
	for i, l := range lines {
		if strings.HasPrefix(l, "apiVersion:") {
			starts = append(starts, i)
		}
	}
	if len(starts) < 2 {
		return []yamlChunk{c}, ""
	}
	numbers := make([]string, len(starts))
	for i, s := range starts {
		numbers[i] = strconv.Itoa(c.line + s)
	}
	starts[0] = 0 // comments before the first apiVersion stay with it
	parts := make([]yamlChunk, len(starts))
	for i, s := range starts {
		end := len(lines)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		parts[i] = yamlChunk{line: c.line + s, text: strings.Join(lines[s:end], "")}
	}
	return parts, strings.Join(numbers, ", ")
}

func isBlankYAML(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func parseYAMLDoc(name string, number int, c yamlChunk) (map[string]any, error) {
	j, err := yamlToJSON(c.text)
	if err != nil {
		msg := err.Error()
		for _, p := range []string{"error converting YAML to JSON: ", "yaml: "} {
			msg = strings.TrimPrefix(msg, p)
		}
		// Report lines of the file, not of the document.
		msg = yamlLineRE.ReplaceAllStringFunc(msg, func(m string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
			return "line " + strconv.Itoa(n+c.line-1)
		})
		msg = strings.ReplaceAll(msg, "\n ", "")
		return nil, &FieldError{File: name, Document: number, Message: "YAML syntax error: " + strings.TrimSpace(msg)}
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, &FieldError{File: name, Document: number, Message: err.Error()}
	}
	switch m := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return m, nil
	default:
		return nil, &FieldError{File: name, Document: number, Message: fmt.Sprintf(
			"expected a resource (a mapping with apiVersion, kind, metadata), got %s", describeJSON(v))}
	}
}

func splitJSON(name string, data []byte) ([]rawDoc, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []rawDoc
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return docs, true
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				if strings.HasSuffix(strings.ToLower(name), ".json") {
					line := bytes.Count(data[:se.Offset], []byte("\n")) + 1
					return append(docs, rawDoc{number: len(docs) + 1, err: &FieldError{File: name, Document: len(docs) + 1,
						Message: fmt.Sprintf("JSON syntax error at line %d: %v", line, err)}}), true
				}
				return nil, false // maybe a YAML flow mapping: let the YAML parser judge
			}
			return append(docs, rawDoc{number: len(docs) + 1, err: &FieldError{File: name, Document: len(docs) + 1, Message: err.Error()}}), true
		}
		d := rawDoc{number: len(docs) + 1}
		if m, ok := v.(map[string]any); ok {
			d.value = m
		} else {
			d.err = &FieldError{File: name, Document: d.number, Message: "expected a JSON object, got " + describeJSON(v)}
		}
		docs = append(docs, d)
	}
}

// yamlToJSON converts one YAML document, rejecting duplicate keys (which
// plain YAML decoding would silently overwrite).
func yamlToJSON(text string) ([]byte, error) { return yaml.YAMLToJSONStrict([]byte(text)) }
