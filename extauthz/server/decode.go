package server

import (
	"errors"
	"iter"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokentailor/tokentailor/extauthz/request"
)

// unmarshalCheckRequest decodes the wire-format CheckRequest b into m, which
// must be empty, with the same result as proto.Unmarshal: the same message,
// or an error where proto.Unmarshal fails (with its error).
//
// protobuf-go decodes by reflection, and its maps (the request's headers,
// a dozen entries or more) go through reflect.Value.SetMapIndex one entry at
// a time: under load this took 12.8 µs of the floor's 42 µs per Check, a
// third of the whole server, in tokentailor and in the floor alike (both
// serve with fastCodec). go-control-plane ships no generated decoding code
// (its vtprotobuf files marshal only), and Go cannot add generated methods to
// its types from here, so the messages every Check carries are decoded by
// hand with protobuf-go's wire primitives (protowire): CheckRequest,
// AttributeContext, its Peers with their socket addresses, Request with its
// Timestamp, and HttpRequest with its headers map or header_map. Metadata
// and the TLS session are handed to proto.Unmarshal, field by field, with
// the recursion budget left at their depth.
//
// Whatever this decoder does not expect (an unknown field, a known field in
// another wire type, a singular message sent twice, a string that is not
// UTF-8, a malformed length) makes it start again with proto.Unmarshal on
// the whole of b, so it never has to reproduce protobuf-go's handling of
// unusual encodings: it only ever succeeds where proto.Unmarshal would, with
// a message proto.Equal to its own (FuzzUnmarshalCheckRequest holds it to
// that). Decoded strings and bytes are copies: b is gRPC's buffer, reused
// once the call is decoded.
//
// lowerKeys reports that no key of the headers map has an upper-case ASCII
// letter: true only when the hand decoder took the request, having looked
// at each key as it copied it, so that request.FromCheckLowerKeys need not
// walk the map again.
func unmarshalCheckRequest(b []byte, m *authv3.CheckRequest) (lowerKeys bool, _ error) {
	upper := false
	if decodeCheckRequest(b, m, &upper) == nil {
		return !upper, nil
	}
	m.Reset()
	return false, proto.Unmarshal(b, m)
}

// errUnusual stops the hand decoder; unmarshalCheckRequest then leaves the
// request to proto.Unmarshal.
var errUnusual = errors.New("server: encoding left to protobuf-go")

// depthPeer is the nesting depth, as protobuf-go counts it (the top
// message is 1), of the messages handed to proto.Unmarshal (metadata, TLS
// session): they get the recursion budget protobuf-go would have left them,
// so that deeply nested metadata is refused at the same depth either way.
const depthPeer = 3

// wireField is one field of a message: its number and type, its payload for
// BytesType and its value for VarintType, and the fields after it.
type wireField struct {
	num     protowire.Number
	typ     protowire.Type
	payload []byte
	varint  uint64
	rest    []byte
}

// fields yields the fields of the message b in order; a malformed one ends
// the walk with errUnusual.
func fields(b []byte) iter.Seq2[wireField, error] {
	return func(yield func(wireField, error) bool) {
		for len(b) > 0 {
			f, err := nextField(b)
			if err != nil {
				yield(f, err)
				return
			}
			b = f.rest
			if !yield(f, nil) {
				return
			}
		}
	}
}

// nextField reads the field at the front of b. Field types other than
// varint and length-delimited (fixed-width, groups), which no hand-decoded
// message has, and malformed input are errUnusual.
func nextField(b []byte) (wireField, error) {
	// Most fields of a request have a one-byte tag and a length under 128.
	if len(b) >= 2 && b[0] < 0x80 && b[0]>>3 != 0 && b[0]&7 == byte(protowire.BytesType) && b[1] < 0x80 {
		if end := 2 + int(b[1]); end <= len(b) {
			return wireField{num: protowire.Number(b[0] >> 3), typ: protowire.BytesType, payload: b[2:end], rest: b[end:]}, nil
		}
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return wireField{}, errUnusual
	}
	b = b[n:]
	f := wireField{num: num, typ: typ}
	switch typ {
	case protowire.BytesType:
		f.payload, n = protowire.ConsumeBytes(b)
	case protowire.VarintType:
		f.varint, n = protowire.ConsumeVarint(b)
	default:
		return wireField{}, errUnusual
	}
	if n < 0 {
		return wireField{}, errUnusual
	}
	f.rest = b[n:]
	return f, nil
}

// str copies a string field's payload, which proto3 requires to be UTF-8.
func (f wireField) str() (string, error) {
	if f.typ != protowire.BytesType || !utf8.Valid(f.payload) {
		return "", errUnusual
	}
	return string(f.payload), nil
}

// name is str for a header name: one of commonHeaders is not copied (the
// map lookup does not allocate).
func (f wireField) name() (string, error) {
	if name, ok := commonHeaders[string(f.payload)]; ok && f.typ == protowire.BytesType {
		return name, nil
	}
	return f.str()
}

// message returns a message field's payload.
func (f wireField) message() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, errUnusual
	}
	return f.payload, nil
}

// once returns the payload of a singular message field; one sent again
// (present: already decoded) is errUnusual, for protobuf-go merges the two.
func (f wireField) once(present bool) ([]byte, error) {
	if present {
		return nil, errUnusual
	}
	return f.message()
}

// delegate decodes a message field the hand decoder leaves to protobuf-go
// into a new m, at nesting depth.
func delegate[M proto.Message](f wireField, present bool, m M, depth int) (M, error) {
	b, err := f.once(present)
	if err != nil {
		return m, err
	}
	if len(b) == 0 {
		return m, nil // an empty message, present: Envoy's metadata often is
	}
	opts := proto.UnmarshalOptions{RecursionLimit: protowire.DefaultRecursionLimit - depth + 1}
	if opts.Unmarshal(b, m) != nil {
		return m, errUnusual
	}
	return m, nil
}

// decodeCheckRequest and the decoders below it decode one message each;
// upper is set when a key of the headers map has an upper-case ASCII letter
// (the key as decoded: an entry may name its key twice, the last one
// counts).
func decodeCheckRequest(b []byte, m *authv3.CheckRequest, upper *bool) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		if f.num != 1 {
			return errUnusual
		}
		p, err := f.once(m.Attributes != nil)
		if err != nil {
			return err
		}
		m.Attributes = new(authv3.AttributeContext)
		if err := decodeAttributes(p, m.Attributes, upper); err != nil {
			return err
		}
	}
	return nil
}

func decodeAttributes(b []byte, m *authv3.AttributeContext, upper *bool) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		var p []byte
		switch f.num {
		case 1, 2: // source, destination
			peer := &m.Source
			if f.num == 2 {
				peer = &m.Destination
			}
			if p, err = f.once(*peer != nil); err == nil {
				*peer = new(authv3.AttributeContext_Peer)
				err = decodePeer(p, *peer)
			}
		case 4:
			if p, err = f.once(m.Request != nil); err == nil {
				m.Request = new(authv3.AttributeContext_Request)
				err = decodeRequest(p, m.Request, upper)
			}
		case 10:
			m.ContextExtensions, err = decodeMapEntry(f, m.ContextExtensions, nil)
		case 11:
			m.MetadataContext, err = delegate(f, m.MetadataContext != nil, new(corev3.Metadata), depthPeer)
		case 12:
			m.TlsSession, err = delegate(f, m.TlsSession != nil, new(authv3.AttributeContext_TLSSession), depthPeer)
		case 13:
			m.RouteMetadataContext, err = delegate(f, m.RouteMetadataContext != nil, new(corev3.Metadata), depthPeer)
		default:
			return errUnusual
		}
		if err != nil {
			return errUnusual
		}
	}
	return nil
}

func decodePeer(b []byte, m *authv3.AttributeContext_Peer) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			var p []byte
			if p, err = f.once(m.Address != nil); err == nil {
				m.Address = new(corev3.Address)
				err = decodeAddress(p, m.Address)
			}
		case 2:
			m.Service, err = f.str()
		case 3:
			m.Labels, err = decodeMapEntry(f, m.Labels, nil)
		case 4:
			m.Principal, err = f.str()
		case 5:
			m.Certificate, err = f.str()
		default:
			return errUnusual
		}
		if err != nil {
			return errUnusual
		}
	}
	return nil
}

func decodeRequest(b []byte, m *authv3.AttributeContext_Request, upper *bool) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		var p []byte
		switch f.num {
		case 1:
			if p, err = f.once(m.Time != nil); err == nil {
				m.Time = new(timestamppb.Timestamp)
				err = decodeTimestamp(p, m.Time)
			}
		case 2:
			if p, err = f.once(m.Http != nil); err == nil {
				m.Http = new(authv3.AttributeContext_HttpRequest)
				err = decodeHTTP(p, m.Http, upper)
			}
		default:
			return errUnusual
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeTimestamp(b []byte, m *timestamppb.Timestamp) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			m.Seconds = int64(f.varint)
		case f.num == 2 && f.typ == protowire.VarintType:
			m.Nanos = int32(f.varint)
		default:
			return errUnusual
		}
	}
	return nil
}

func decodeHTTP(b []byte, m *authv3.AttributeContext_HttpRequest, upper *bool) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			m.Id, err = f.str()
		case 2:
			m.Method, err = f.str()
		case 3:
			m.Headers, err = decodeMapEntry(f, m.Headers, upper)
		case 4:
			m.Path, err = f.str()
		case 5:
			m.Host, err = f.str()
		case 6:
			m.Scheme, err = f.str()
		case 7:
			m.Query, err = f.str()
		case 8:
			m.Fragment, err = f.str()
		case 9:
			if f.typ != protowire.VarintType {
				return errUnusual
			}
			m.Size = int64(f.varint)
		case 10:
			m.Protocol, err = f.str()
		case 11:
			m.Body, err = f.str()
		case 12:
			var p []byte
			if p, err = f.message(); err == nil {
				m.RawBody = append([]byte(nil), p...)
			}
		case 13:
			var p []byte
			if p, err = f.once(m.HeaderMap != nil); err == nil {
				m.HeaderMap = new(corev3.HeaderMap)
				err = decodeHeaderMap(p, m.HeaderMap)
			}
		default:
			return errUnusual
		}
		if err != nil {
			return errUnusual
		}
	}
	return nil
}

// decodeMapEntry adds the map<string, string> entry f to m and returns m;
// a nil m is made with room for the entries of the same field that follow
// (up to maxSizeHint), which Envoy sends one after another. With upper, it
// sets *upper when the key has an upper-case ASCII letter.
func decodeMapEntry(f wireField, m map[string]string, upper *bool) (map[string]string, error) {
	p, err := f.message()
	if err != nil {
		return m, err
	}
	var k, v string
	for e, err := range fields(p) {
		if err != nil {
			return m, err
		}
		switch e.num {
		case 1:
			k, err = e.name()
		case 2:
			v, err = e.str()
		default:
			return m, errUnusual
		}
		if err != nil {
			return m, err
		}
	}
	if upper != nil && request.HasUpper(k) {
		*upper = true
	}
	if m == nil {
		m = make(map[string]string, 1+min(countField(f.rest, f.num), maxSizeHint))
	}
	m[k] = v
	return m, nil
}

// maxSizeHint bounds the room made ahead for a map's or a list's entries.
// Entries are counted, not their distinct keys: a request repeating one
// short entry a million times would otherwise have a table made for a
// million keys (a 2 MiB request, 84 MB) where protobuf-go keeps one. Envoy
// sends at most 100 headers by default (max_headers_count).
const maxSizeHint = 128

// countField counts the length-delimited fields numbered num at the front
// of b, up to the first other field.
func countField(b []byte, num protowire.Number) int {
	n := 0
	for f, err := range fields(b) {
		if err != nil || f.num != num || f.typ != protowire.BytesType {
			break
		}
		n++
	}
	return n
}

// commonHeaders holds the names of headers most requests carry, so that a
// map key naming one needs no string of its own: Envoy sends a dozen or more
// per Check, each a copy otherwise. Keys are compared whole, so any other
// name is copied as before.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{
		":authority", ":method", ":path", ":scheme", ":protocol",
		"accept", "accept-encoding", "accept-language", "authorization", "cache-control", "connection",
		"content-length", "content-type", "cookie", "dpop", "forwarded", "host", "if-modified-since",
		"if-none-match", "origin", "pragma", "referer", "te", "user-agent", "via",
		"baggage", "traceparent", "tracestate", "x-b3-parentspanid", "x-b3-sampled", "x-b3-spanid",
		"x-b3-traceid", "b3", "x-cloud-trace-context", "x-amzn-trace-id",
		"x-envoy-attempt-count", "x-envoy-decorator-operation", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-external-address", "x-envoy-internal", "x-envoy-original-path", "x-envoy-peer-metadata",
		"x-envoy-peer-metadata-id", "x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-host",
		"x-forwarded-port", "x-forwarded-proto", "x-real-ip", "x-request-id",
		"sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
	} {
		m[name] = name
	}
	return m
}()

// decodeHeaderMap decodes a HeaderMap: Envoy's header list when its filter
// sets encode_raw_headers. Its first HeaderValues (up to maxSizeHint) share
// one allocation.
func decodeHeaderMap(b []byte, m *corev3.HeaderMap) error {
	n := min(countField(b, 1), maxSizeHint)
	var values []corev3.HeaderValue
	if n > 0 {
		values = make([]corev3.HeaderValue, n)
		m.Headers = make([]*corev3.HeaderValue, 0, n)
	}
	for f, err := range fields(b) {
		if err != nil || f.num != 1 {
			return errUnusual
		}
		p, err := f.message()
		if err != nil {
			return err
		}
		var h *corev3.HeaderValue
		if i := len(m.Headers); i < len(values) {
			h = &values[i]
		} else {
			h = new(corev3.HeaderValue)
		}
		if err := decodeHeaderValue(p, h); err != nil {
			return err
		}
		m.Headers = append(m.Headers, h)
	}
	return nil
}

func decodeHeaderValue(b []byte, m *corev3.HeaderValue) error {
	for f, err := range fields(b) {
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			m.Key, err = f.name()
		case 2:
			m.Value, err = f.str()
		case 3:
			var p []byte
			if p, err = f.message(); err == nil {
				m.RawValue = append([]byte(nil), p...)
			}
		default:
			return errUnusual
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeAddress decodes a peer's Address, which Envoy sends as a socket
// address with a port number; any other kind of address is left to
// protobuf-go.
func decodeAddress(b []byte, m *corev3.Address) error {
	if len(b) == 0 {
		return nil
	}
	f, err := nextField(b)
	if err != nil || f.num != 1 || len(f.rest) > 0 {
		return errUnusual
	}
	p, err := f.message()
	if err != nil {
		return err
	}
	s := new(corev3.SocketAddress)
	m.Address = &corev3.Address_SocketAddress{SocketAddress: s}
	for f, err := range fields(p) {
		if err != nil {
			return err
		}
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			s.Protocol = corev3.SocketAddress_Protocol(int32(f.varint))
		case f.num == 2:
			s.Address, err = f.str()
		case f.num == 3 && f.typ == protowire.VarintType:
			s.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(f.varint)}
		default:
			return errUnusual
		}
		if err != nil {
			return err
		}
	}
	return nil
}
