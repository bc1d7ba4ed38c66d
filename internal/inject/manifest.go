package inject

import (
	"bytes"
	"fmt"
	"regexp"

	"sigs.k8s.io/yaml"
)

// docSeparator is a YAML document start line ("---", maybe followed by a
// comment).
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// Manifests injects every pod template of a kubectl-style multi-document
// YAML stream, as `istioctl kube-inject` does: workload documents come back
// injected, every other document (and a workload the policy leaves alone)
// exactly as written, in the same order. namespaceLabels are the labels
// assumed for every namespace (kube-inject sees no cluster).
// Errors name the document (1-based) and the object.
func Manifests(in []byte, defaultNamespace string, namespaceLabels map[string]string, params Params) ([]byte, error) {
	var out bytes.Buffer
	for i, doc := range splitDocuments(in) {
		text, err := injectDocument(doc, defaultNamespace, namespaceLabels, params)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(text)
		if !bytes.HasSuffix(text, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), nil
}

func splitDocuments(in []byte) [][]byte {
	idx := docSeparator.FindAllIndex(in, -1)
	var docs [][]byte
	start := 0
	for _, m := range idx {
		docs = append(docs, in[start:m[0]])
		start = m[1]
		if start < len(in) && in[start] == '\n' {
			start++
		}
	}
	return append(docs, in[start:])
}

// injectDocument returns doc injected, or doc itself when nothing in it is
// injected.
func injectDocument(doc []byte, defaultNamespace string, namespaceLabels map[string]string, params Params) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, fmt.Errorf("invalid YAML: %v", err)
	}
	if obj == nil {
		return doc, nil // empty or only comments
	}
	changed := false
	if kind, _ := obj["kind"].(string); kind == "List" {
		items, _ := obj["items"].([]any)
		for j, it := range items {
			item, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("items[%d]: not an object", j)
			}
			mode, err := Object(item, namespaceLabels, defaultNamespace, params)
			if err != nil {
				return nil, fmt.Errorf("items[%d]: %w", j, err)
			}
			changed = changed || mode != None
		}
	} else {
		mode, err := Object(obj, namespaceLabels, defaultNamespace, params)
		if err != nil {
			return nil, err
		}
		changed = mode != None
	}
	if !changed {
		return doc, nil
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return b, nil
}
