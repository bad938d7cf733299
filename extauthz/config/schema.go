package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
)

// removedFields are fields tokentailor once read, with what to do instead.
var removedFields = map[string]string{
	"issuers[].opaque": `was removed: an issuer introspects opaque tokens when it has an introspection block; delete the line`,
}

// lineIndex maps field paths to the line they start on.
type lineIndex map[string]int

// of returns the line of field, or of its nearest parent the file names.
func (l lineIndex) of(field string) int {
	for field != "" {
		if n, ok := l[field]; ok {
			return n
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

// checkShape walks the YAML document against Config's types before it is
// decoded, so that what the decoder would report as "json: unknown field"
// or "cannot unmarshal array into string" becomes an error that names the
// path and line and suggests the fix. It also indexes the line of every
// field for errors found later. YAML it cannot read is left to the decoder,
// which reports it as before.
func checkShape(data []byte) (lineIndex, []FieldError) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return lineIndex{}, nil
	}
	w := &shapeWalker{lines: lineIndex{}}
	w.walk(doc.Content[0], reflect.TypeFor[Config](), "", 0)
	return w.lines, w.errs
}

type shapeWalker struct {
	lines lineIndex
	errs  []FieldError
}

// maxShapeDepth bounds the walk; the config is at most six levels deep, so
// anything deeper is already refused for its shape.
const maxShapeDepth = 16

var (
	durationType   = reflect.TypeFor[Duration]()
	stringListType = reflect.TypeFor[StringList]()
)

func (w *shapeWalker) bad(n *yamlv3.Node, field, format string, args ...any) {
	if field == "" {
		field = "(top level)"
	}
	w.errs = append(w.errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Line: n.Line})
}

// walk checks node n against type t at path. Aliases and nulls are left to
// the decoder (an alias was checked where its anchor is).
func (w *shapeWalker) walk(n *yamlv3.Node, t reflect.Type, path string, depth int) {
	if depth > maxShapeDepth || n.Kind == yamlv3.AliasNode || n.Tag == "!!null" {
		return
	}
	if path != "" {
		if _, ok := w.lines[path]; !ok {
			w.lines[path] = n.Line
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		w.duration(n, path)
	case t == stringListType:
		if n.Kind == yamlv3.SequenceNode {
			w.walk(n, reflect.TypeFor[[]string](), path, depth)
		} else if n.Kind != yamlv3.ScalarNode {
			w.bad(n, path, "want a string or a list of strings")
		}
	case t.Kind() == reflect.Struct:
		w.object(n, t, path, depth)
	case t.Kind() == reflect.Slice:
		w.list(n, t, path, depth)
	case t.Kind() == reflect.Map:
		w.mapping(n, t, path, depth)
	default:
		w.scalar(n, t, path)
	}
}

func (w *shapeWalker) duration(n *yamlv3.Node, path string) {
	if n.Kind != yamlv3.ScalarNode {
		w.bad(n, path, "want a duration (e.g. 30s, 5m)")
		return
	}
	if _, err := time.ParseDuration(n.Value); err != nil {
		w.bad(n, path, "invalid duration %q (e.g. 5m)", n.Value)
	}
}

func (w *shapeWalker) object(n *yamlv3.Node, t reflect.Type, path string, depth int) {
	if n.Kind != yamlv3.MappingNode {
		w.bad(n, path, "want a mapping of fields (%s)", strings.Join(fieldNames(t), ", "))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" { // a YAML merge key: the decoder resolves it
			continue
		}
		f, ok := fieldByName(t, k.Value)
		if !ok {
			w.unknown(k, t, path)
			continue
		}
		w.walk(v, f.Type, join(path, k.Value), depth+1)
	}
}

// unknown reports a field t lacks: removed ones with what replaced them,
// others with the closest known name.
func (w *shapeWalker) unknown(k *yamlv3.Node, t reflect.Type, path string) {
	generic := join(stripIndexes(path), k.Value)
	if why, ok := removedFields[generic]; ok {
		w.bad(k, join(path, k.Value), "%s", why)
		return
	}
	msg := fmt.Sprintf("unknown field %q", k.Value)
	if s := closest(k.Value, fieldNames(t)); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	w.bad(k, path, "%s", msg)
}

func (w *shapeWalker) list(n *yamlv3.Node, t reflect.Type, path string, depth int) {
	if n.Kind != yamlv3.SequenceNode {
		w.bad(n, path, "want a list of %s", describe(t.Elem()))
		return
	}
	for i, e := range n.Content {
		w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
	}
}

func (w *shapeWalker) mapping(n *yamlv3.Node, t reflect.Type, path string, depth int) {
	if n.Kind != yamlv3.MappingNode {
		w.bad(n, path, "want a mapping of names to %s", describe(t.Elem()))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), depth+1)
	}
}

// scalar checks strings, numbers and booleans by the tag YAML resolved.
func (w *shapeWalker) scalar(n *yamlv3.Node, t reflect.Type, path string) {
	if t.Kind() == reflect.Interface {
		return
	}
	want := describe(t)
	if n.Kind != yamlv3.ScalarNode {
		w.bad(n, path, "want %s", want)
		return
	}
	switch t.Kind() {
	case reflect.String:
		if n.Tag != "!!str" && n.Style == 0 && (n.Tag == "!!bool" || n.Tag == "!!int" || n.Tag == "!!float") {
			w.bad(n, path, "want a string; quote it: %q", n.Value)
		}
	case reflect.Bool:
		if n.Tag != "!!bool" {
			w.bad(n, path, "want true or false, not %q", n.Value)
		}
	case reflect.Int, reflect.Int64:
		if n.Tag != "!!int" {
			w.bad(n, path, "want a whole number, not %q", n.Value)
		}
	}
}

// describe names t for "want …" messages.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "durations (e.g. 30s)"
	case t == stringListType:
		return "strings or lists of strings"
	}
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "whole numbers"
	case reflect.Struct:
		return "mappings of fields (" + strings.Join(fieldNames(t), ", ") + ")"
	case reflect.Slice:
		return "lists"
	case reflect.Map:
		return "mappings"
	}
	return "values"
}

// fieldNames lists the YAML names of t's fields.
func fieldNames(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if name := yamlName(f); name != "" {
			out = append(out, name)
		}
	}
	return out
}

func fieldByName(t reflect.Type, name string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlName is a field's name in the file: its json tag (sigs.k8s.io/yaml
// decodes through encoding/json); "" for fields the file cannot set.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() || f.Anonymous {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// stripIndexes turns "issuers[0].client" into "issuers[].client".
func stripIndexes(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
			b.WriteString("[]")
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a typo (at most a third of its length, and at most 3).
func closest(s string, candidates []string) string {
	best, bestD := "", min(3, max(1, len(s)/3))+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
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
