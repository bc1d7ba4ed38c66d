package config

import (
	"fmt"
	"strings"
)

// Warning is a problem that does not stop an object from being applied:
// deprecated fields, input Skein had to repair (the tutorial's singular
// `host:`), rules that can never match. It is located like a FieldError.
type Warning struct {
	File     string
	Document int
	Kind     string
	Name     string
	Field    string
	Message  string
}

// String renders the warning in the same layout as FieldError.
func (w Warning) String() string {
	fe := FieldError(w)
	return fe.Error()
}

// issue is a problem found while walking one document, before the document's
// file/kind/name are attached.
type issue struct {
	field   string
	message string
}

func (i issue) String() string { return i.field + ": " + i.message }

// docContext carries where a document came from, so every error and warning
// found in it can name its location.
type docContext struct {
	file     string
	document int
	// prefix is prepended to field paths of items in a List ("items[2].").
	prefix string
	kind   string
	name   string
}

func (c docContext) fieldError(field, format string, args ...any) *FieldError {
	return &FieldError{File: c.file, Document: c.document, Kind: c.kind, Name: c.name,
		Field: c.path(field), Message: fmt.Sprintf(format, args...)}
}

func (c docContext) warning(field, format string, args ...any) Warning {
	return Warning{File: c.file, Document: c.document, Kind: c.kind, Name: c.name,
		Field: c.path(field), Message: fmt.Sprintf(format, args...)}
}

func (c docContext) path(field string) string {
	if c.prefix == "" {
		return field
	}
	if field == "" {
		return strings.TrimSuffix(c.prefix, ".")
	}
	return c.prefix + field
}

// suggest returns ` (did you mean "x"?)` when one of candidates is close to
// name: same letters in another case, or at most two edits away.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	lower := strings.ToLower(name)
	for _, c := range candidates {
		if strings.ToLower(c) == lower {
			return fmt.Sprintf(" (did you mean %q?)", c)
		}
		if d := EditDistance(lower, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// EditDistance is the Levenshtein distance between a and b (also what
// skein install's nearest-key errors rank by).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
