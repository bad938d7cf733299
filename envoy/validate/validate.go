// Package validate proves an Envoy v3 bootstrap valid without an Envoy binary,
// and checks that it puts tokentailor on the request path the way tokentailor
// expects.
//
// Three layers, each catching what the one before cannot:
//
//  1. [Parse]: YAML → JSON (sigs.k8s.io/yaml) → strict protojson into
//     bootstrapv3.Bootstrap. Unknown fields, bad enum values and unknown
//     "@type"s fail here, with the path of the offending field.
//  2. [Deep]: the generated ValidateAll rules (protoc-gen-validate), applied to
//     the bootstrap and, recursively, inside every google.protobuf.Any, which
//     ValidateAll alone does not enter (every typed_config is an Any).
//  3. [Refs]: references between parts that no proto rule sees: clusters named
//     by routes and by ext_authz exist, the ext_authz cluster speaks HTTP/2 to
//     tokentailor's gRPC address (or, for http_service, HTTP to its HTTP
//     listener under path_prefix /envoy), the router is the last HTTP filter, every
//     context_extensions route names a tokentailor route, admin is on loopback,
//     ext_authz fails closed.
//
// [File] runs all three. Every error names the place in the bootstrap, e.g.
// static_resources.listeners[0].filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager).http_filters[0],
// and wraps one of the sentinel errors below.
package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrSyntax: not YAML/JSON, an unknown field, a bad enum value, a wrong
	// type or an unknown typed_config "@type".
	ErrSyntax = errors.New("envoy config does not parse")
	// ErrInvalid: a field breaks a rule of Envoy's API (ValidateAll).
	ErrInvalid = errors.New("envoy config breaks an API rule")
	// ErrUnknownCluster: a route or filter names a cluster that is not defined.
	ErrUnknownCluster = errors.New("unknown cluster")
	// ErrRouterNotLast: an HTTP filter chain does not end with the router.
	ErrRouterNotLast = errors.New("router is not the last http filter")
	// ErrFailOpen: ext_authz lets requests through when tokentailor fails.
	ErrFailOpen = errors.New("ext_authz fails open")
	// ErrAuthzSettings: an ext_authz setting tokentailor relies on is wrong.
	ErrAuthzSettings = errors.New("ext_authz setting")
	// ErrAuthzCluster: the ext_authz cluster lacks HTTP/2 or points elsewhere
	// than tokentailor's configured address.
	ErrAuthzCluster = errors.New("ext_authz cluster")
	// ErrIgnored: a setting Envoy silently ignores in this mode, e.g.
	// context_extensions with an http_service, which sends none.
	ErrIgnored = errors.New("setting ignored by envoy")
	// ErrUnknownRoute: a context_extensions route names no tokentailor route.
	ErrUnknownRoute = errors.New("unknown tokentailor route")
	// ErrUnknownFilter: a per-route ext_authz config is keyed by a name that
	// is no ext_authz filter of its connection manager, so Envoy ignores it.
	ErrUnknownFilter = errors.New("per-route config for unknown filter")
	// ErrUnchecked: a connection manager forwards to clusters without an
	// ext_authz filter.
	ErrUnchecked = errors.New("traffic forwarded without ext_authz")
	// ErrAdminExposed: Envoy's admin interface is bound to a non-loopback address.
	ErrAdminExposed = errors.New("admin not bound to loopback")
)

// Tokentailor is what the bootstrap must agree with: tokentailor's own config.
type Tokentailor struct {
	// Socket is the unix socket path tokentailor serves ext_authz on ("" for none).
	Socket string
	// GRPC is the TCP host:port tokentailor serves ext_authz on ("" for none).
	GRPC string
	// HTTP is the TCP host:port of tokentailor's HTTP authorization listener
	// (listen.http), which an http_service ext_authz must reach ("" for none).
	HTTP string
	// Routes are tokentailor's route names. Nil skips the context_extensions check.
	Routes []string
	// ContextKey is the context_extensions key naming the route; "" means "route".
	ContextKey string
}

// File parses, deep-validates and cross-checks a bootstrap against tt.
// It returns the parsed bootstrap when all checks pass.
func File(yamlOrJSON []byte, tt Tokentailor) (*bootstrapv3.Bootstrap, error) {
	b, err := Parse(yamlOrJSON)
	if err != nil {
		return nil, err
	}
	if err := Deep(b); err != nil {
		return nil, err
	}
	if err := Refs(b, tt); err != nil {
		return nil, err
	}
	return b, nil
}

// Parse decodes a YAML (or JSON) bootstrap strictly: unknown fields, bad
// enum values and unknown "@type"s are errors wrapping ErrSyntax that name the
// offending field's path. Only the typed_config types registered in this
// binary are known; this package registers the ones tokentailor's configs use
// (see types.go).
func Parse(yamlOrJSON []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(yamlOrJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		if at := locate(js, b.ProtoReflect().Descriptor()); at != "" {
			return nil, fmt.Errorf("%s: %w: %w", at, ErrSyntax, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return b, nil
}

type validator interface{ ValidateAll() error }

// Deep runs ValidateAll on m and on the message inside every
// google.protobuf.Any reachable from m (in fields, lists and maps, and
// inside Anys inside Anys). All failures are joined; each wraps ErrInvalid
// (or ErrSyntax for an Any that does not unpack) and names its path.
func Deep(m proto.Message) error {
	var errs []error
	deep(m, "", &errs)
	return errors.Join(errs...)
}

func deep(m proto.Message, at string, errs *[]error) {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w: %w", orRoot(at), ErrInvalid, err))
		}
	}
	walkAnys(m.ProtoReflect(), at, errs)
}

// walkAnys finds every Any below m and validates what it holds.
func walkAnys(m protoreflect.Message, at string, errs *[]error) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(at, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message(), fmt.Sprintf("%s[%s]", name, k.String()), errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			visit(v.Message(), name, errs)
		}
		return true
	})
}

func visit(m protoreflect.Message, at string, errs *[]error) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		walkAnys(m, at, errs)
		return
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %w: %w", at, ErrSyntax, err))
		return
	}
	deep(inner, fmt.Sprintf("%s(%s)", at, inner.ProtoReflect().Descriptor().FullName()), errs)
}

func join(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

func orRoot(at string) string {
	if at == "" {
		return "bootstrap"
	}
	return at
}

// locate finds the path of the first field protojson would reject: an
// unknown field, an unknown "@type" or an unknown enum name. It returns ""
// when it finds none (then protojson's own message has to do).
func locate(js []byte, md protoreflect.MessageDescriptor) string {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return ""
	}
	return locateMsg(v, md, "")
}

func locateMsg(v any, md protoreflect.MessageDescriptor, at string) string {
	obj, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	if md.FullName() == "google.protobuf.Any" {
		t, _ := obj["@type"].(string)
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(t)
		if err != nil {
			return join(at, "@type")
		}
		inner := mt.Descriptor()
		at = fmt.Sprintf("%s(%s)", at, inner.FullName())
		if strings.HasPrefix(string(inner.FullName()), "google.protobuf.") {
			return "" // well-known types hold their JSON under "value"
		}
		rest := make(map[string]any, len(obj))
		for k, x := range obj {
			if k != "@type" {
				rest[k] = x
			}
		}
		return locateMsg(rest, inner, at)
	}
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return "" // well-known types have their own JSON forms
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		x := obj[k]
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		if fd == nil {
			return join(at, k)
		}
		name := join(at, string(fd.Name()))
		switch {
		case fd.IsMap():
			m, _ := x.(map[string]any)
			for mk, mv := range m {
				if p := locateValue(mv, fd.MapValue(), fmt.Sprintf("%s[%s]", name, mk)); p != "" {
					return p
				}
			}
		case fd.IsList():
			l, _ := x.([]any)
			for i, e := range l {
				if p := locateValue(e, fd, fmt.Sprintf("%s[%d]", name, i)); p != "" {
					return p
				}
			}
		default:
			if p := locateValue(x, fd, name); p != "" {
				return p
			}
		}
	}
	return ""
}

func locateValue(v any, fd protoreflect.FieldDescriptor, at string) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return locateMsg(v, fd.Message(), at)
	case protoreflect.EnumKind:
		if s, ok := v.(string); ok && fd.Enum().Values().ByName(protoreflect.Name(s)) == nil {
			return at
		}
	}
	return ""
}
