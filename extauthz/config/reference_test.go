package config

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// referenceConfig documents every field with its default.
const referenceConfig = "../../docs/examples/tokentailor-sidecar.yaml"

// nonDefaultConfig sets every issuer, route, cache, credential and mint
// field (every field, in fact) to a value other than its default.
const nonDefaultConfig = "testdata/nondefault.yaml"

// leafPaths lists the generic paths ("issuers[].introspection.endpoint") of
// every field of t a file can set whose value is not itself a block of
// fields: the knobs.
func leafPaths(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name := yamlName(f)
		if name == "" {
			continue
		}
		p := join(prefix, name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			out = append(out, leafPaths(ft, p)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafPaths(ft.Elem(), p+"[]")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

// occurrence is one leaf value in a file.
type occurrence struct {
	path    string // generic
	node    *yamlv3.Node
	typ     reflect.Type
	example bool // the file marks it (or a block around it) "example"
}

// commentedBlocks returns, uncommented, the optional top-level blocks a file
// documents as comments ("# shared_cache:" followed by "#   key: value"
// lines): a sidecar must not turn them on, yet they are documented and
// checked like every other field.
func commentedBlocks(data []byte) []byte {
	var out []byte
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case !strings.HasPrefix(line, "# "):
			in = false
		case len(line) > 2 && line[2] != ' ' && strings.HasSuffix(strings.TrimRight(line, "\n"), ":"):
			_, in = fieldByName(reflect.TypeFor[Config](), strings.TrimSuffix(strings.TrimSpace(line[2:]), ":"))
		}
		if in {
			out = append(out, line[2:]...)
		}
	}
	return out
}

// uncommentNested uncomments, in place, the optional blocks documented
// inside another block: an indented "# key:" line (nothing else on it)
// and the lines under it that start with the same indentation and "#   ".
func uncommentNested(data []byte) []byte {
	var out []byte
	prefix := ""
	for line := range strings.Lines(string(data)) {
		body := strings.TrimLeft(line, " ")
		indent := line[:len(line)-len(body)]
		switch {
		case prefix != "" && strings.HasPrefix(line, prefix+"#   "):
			line = prefix + line[len(prefix)+2:]
		case indent != "" && strings.HasPrefix(body, "# ") && len(body) > 2 && body[2] != ' ' &&
			strings.HasSuffix(strings.TrimRight(body, "\n"), ":") && !strings.Contains(body[2:], " "):
			prefix = indent
			line = indent + body[2:]
		default:
			prefix = ""
		}
		out = append(out, line...)
	}
	return out
}

// occurrences walks a YAML file against Config's types.
func occurrences(t *testing.T, file string) []occurrence {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	data = uncommentNested(data)
	if err := yamlv3.Unmarshal(append(data, commentedBlocks(data)...), &doc); err != nil {
		t.Fatal(err)
	}
	var out []occurrence
	var walk func(n *yamlv3.Node, typ reflect.Type, path string, example bool)
	walk = func(n *yamlv3.Node, typ reflect.Type, path string, example bool) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch {
		case typ.Kind() == reflect.Struct && typ != durationType && n.Kind == yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				f, ok := fieldByName(typ, k.Value)
				if !ok {
					t.Errorf("%s: %s.%s is not a config field", file, path, k.Value)
					continue
				}
				walk(v, f.Type, join(path, k.Value), example || marked(k) || marked(v))
			}
		case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct && n.Kind == yamlv3.SequenceNode:
			for _, item := range n.Content {
				ex := example || strings.Contains(item.HeadComment, "example")
				if item.Kind == yamlv3.MappingNode && len(item.Content) > 0 {
					ex = ex || strings.Contains(item.Content[0].HeadComment, "example")
				}
				walk(item, typ.Elem(), path+"[]", ex)
			}
		default:
			out = append(out, occurrence{path: path, node: n, typ: typ, example: example || markedDeep(n)})
		}
	}
	walk(doc.Content[0], reflect.TypeFor[Config](), "", false)
	return out
}

// marked reports whether n's own line comment says "example".
func marked(n *yamlv3.Node) bool { return strings.Contains(n.LineComment, "example") }

// markedDeep reports whether any comment inside n says "example".
func markedDeep(n *yamlv3.Node) bool {
	if marked(n) || strings.Contains(n.HeadComment, "example") || strings.Contains(n.FootComment, "example") {
		return true
	}
	return slices.ContainsFunc(n.Content, markedDeep)
}

// defaults is a config whose every block is present but empty, defaulted:
// routes[0] mints, routes[1] exchanges, routes[2] is embedded.
func defaults() *Config {
	c := &Config{
		Mint:            Mint{Keys: []SigningKey{{}}},
		SharedCache:     &SharedCache{},
		TxnTokenService: &TxnTokenService{},
		Issuers:         []Issuer{{Introspection: &Introspection{}, Client: &Client{}, HMACSecret: &Secret{}, RevocationPush: &RevocationPush{}}},
		Routes: []Route{
			{Match: &Match{}},
			{Upstream: Upstream{Mode: "exchange"}},
			{Upstream: Upstream{Mode: "embedded"}},
		},
	}
	c.applyDefaults()
	return c
}

// defaultOf returns the JSON of the default at the generic path p.
func defaultOf(t *testing.T, c *Config, p string) string {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	for _, seg := range strings.Split(p, ".") {
		name, list := strings.CutSuffix(seg, "[]")
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v = reflect.New(v.Type().Elem())
			}
			v = v.Elem()
		}
		f, ok := fieldByName(v.Type(), name)
		if !ok {
			t.Fatalf("no field %s in %s", name, p)
		}
		v = v.FieldByIndex(f.Index)
		if list {
			i := 0
			switch {
			case strings.HasPrefix(p, "routes[].upstream.exchange."):
				i = 1
			case p == "routes[].upstream.embedded_claim":
				i = 2
			}
			v = v.Index(i)
		}
	}
	return canonical(t, v.Interface())
}

// canonical renders v as JSON, with empty values alike.
func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	switch s := string(b); s {
	case "null", "[]", "{}", `""`:
		return "empty"
	default:
		return s
	}
}

// valueOf decodes a file's value as config would.
func valueOf(t *testing.T, o occurrence) string {
	t.Helper()
	text, err := yamlv3.Marshal(o.node)
	if err != nil {
		t.Fatal(err)
	}
	ptr := reflect.New(o.typ)
	if err := yaml.Unmarshal(text, ptr.Interface()); err != nil {
		t.Fatalf("%s: %v", o.path, err)
	}
	if o.typ.Kind() == reflect.Slice && o.typ.Elem().Kind() == reflect.String && ptr.Elem().Len() == 0 {
		return "empty"
	}
	return canonical(t, ptr.Elem().Interface())
}

// TestReferenceConfigIsComplete: every field of the config appears in the
// reference config.
func TestReferenceConfigIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range occurrences(t, referenceConfig) {
		seen[o.path] = true
	}
	for _, p := range leafPaths(reflect.TypeFor[Config](), "") {
		if !seen[p] {
			t.Errorf("%s is not documented in %s", p, referenceConfig)
		}
	}
}

// TestReferenceConfigShowsDefaults: every value the reference config does
// not mark "example" is the default.
func TestReferenceConfigShowsDefaults(t *testing.T) {
	def := defaults()
	for _, o := range occurrences(t, referenceConfig) {
		if o.example {
			continue
		}
		if got, want := valueOf(t, o), defaultOf(t, def, o.path); got != want {
			t.Errorf("line %d: %s is %s, but the default is %s: show the default or mark the value \"example\"", o.node.Line, o.path, got, want)
		}
	}
}

// TestNonDefaultConfigSetsEveryField: the fixture of the wiring test sets
// every field to something other than its default somewhere, so a knob
// that does not reach its component shows there.
func TestNonDefaultConfigSetsEveryField(t *testing.T) {
	def := defaults()
	nonDefault := map[string]bool{}
	for _, o := range occurrences(t, nonDefaultConfig) {
		if valueOf(t, o) != defaultOf(t, def, o.path) {
			nonDefault[o.path] = true
		}
	}
	// dpop.nonce_secret is a single block holding exactly one of file and
	// env: the fixture sets env; file goes through the same ReadSecret as
	// the issuers' secrets, which the fixture sets both ways.
	nonDefault["dpop.nonce_secret.file"] = true
	// So are shared_cache's password (env set) and key_secret (file set).
	nonDefault["shared_cache.password.file"] = true
	nonDefault["shared_cache.key_secret.env"] = true
	// txn_token_service.client.secret: env set; file as the issuers'.
	nonDefault["txn_token_service.client.secret.file"] = true
	for _, p := range leafPaths(reflect.TypeFor[Config](), "") {
		if !nonDefault[p] {
			t.Errorf("%s: %s is not set to a non-default value", nonDefaultConfig, p)
		}
	}
	if _, err := Load(nonDefaultConfig); err != nil {
		t.Fatalf("%s does not load: %v", nonDefaultConfig, err)
	}
}
