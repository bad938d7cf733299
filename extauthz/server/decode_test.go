package server

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// socket is the TCP socket address ip:port, as Envoy sends a peer's.
func socket(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// envoyCheckRequest is a CheckRequest as Envoy's ext_authz filter fills it
// in a sidecar that terminates mTLS: both peers with socket addresses and
// SPIFFE principals, the request time, metadata and the TLS session. raw
// sends the headers as header_map (encode_raw_headers), one entry per line.
func envoyCheckRequest(raw bool) *authv3.CheckRequest {
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice", "claims": map[string]any{"scope": "orders:read"}})
	h := &authv3.AttributeContext_HttpRequest{
		Id: "10817624517389241512", Method: "POST", Path: "/orders?limit=10", Host: "orders.example.com",
		Scheme: "https", Protocol: "HTTP/2", Size: -1,
	}
	headers := [][2]string{
		{":authority", "orders.example.com"}, {":path", "/orders?limit=10"}, {":method", "POST"},
		{":scheme", "https"}, {"authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"},
		{"accept", "application/json"}, {"x-forwarded-for", "203.0.113.9"}, {"x-forwarded-for", "10.0.0.7"},
		{"user-agent", "curl/8.11 ünïcode"}, {"x-request-id", "6f1c0e62-8d4b-4c55-9c1f-2a6f0f4f3a11"},
	}
	if raw {
		h.HeaderMap = &corev3.HeaderMap{}
		for _, kv := range headers {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
	} else {
		h.Headers = map[string]string{}
		for _, kv := range headers {
			if prev, ok := h.Headers[kv[0]]; ok {
				h.Headers[kv[0]] = prev + "," + kv[1]
			} else {
				h.Headers[kv[0]] = kv[1]
			}
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socket("10.0.0.7", 51234),
			Principal: "spiffe://cluster.local/ns/shop/sa/web", Certificate: "-----BEGIN%20CERTIFICATE-----%0AMIIB"},
		Destination: &authv3.AttributeContext_Peer{Address: socket("10.0.0.9", 8443),
			Principal: "spiffe://cluster.local/ns/shop/sa/orders", Service: "orders", Labels: map[string]string{"app": "orders"}},
		Request:              &authv3.AttributeContext_Request{Time: &timestamppb.Timestamp{Seconds: 1796342400, Nanos: 123456789}, Http: h},
		ContextExtensions:    map[string]string{"route": "orders-write", "tenant": "acme"},
		MetadataContext:      &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": meta}},
		RouteMetadataContext: &corev3.Metadata{},
		TlsSession:           &authv3.AttributeContext_TLSSession{Sni: "orders.example.com"},
	}}
}

// pb appends fields to a message by hand, for encodings a marshaller never
// writes.
type pb []byte

func (m pb) bytes(num protowire.Number, v []byte) pb {
	m = protowire.AppendTag(m, num, protowire.BytesType)
	return protowire.AppendBytes(m, v)
}

func (m pb) str(num protowire.Number, v string) pb { return m.bytes(num, []byte(v)) }

func (m pb) varint(num protowire.Number, v uint64) pb {
	m = protowire.AppendTag(m, num, protowire.VarintType)
	return protowire.AppendVarint(m, v)
}

// inHTTP wraps HttpRequest fields into a whole CheckRequest.
func inHTTP(http pb) []byte {
	return pb(nil).bytes(1, pb(nil).bytes(4, pb(nil).bytes(2, http)))
}

// inPeer wraps Address fields into the source peer of a whole CheckRequest.
func inPeer(addr pb) []byte {
	return pb(nil).bytes(1, pb(nil).bytes(1, pb(nil).bytes(1, addr)))
}

// decodeCases are encodings with whether the hand decoder takes them itself
// (fast) or leaves them to proto.Unmarshal.
func decodeCases(t testing.TB) []struct {
	name string
	b    []byte
	fast bool
} {
	must := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := func(k, v string) pb { return pb(nil).str(1, k).str(2, v) }
	return []struct {
		name string
		b    []byte
		fast bool
	}{
		{name: "load tool's request", b: must(benchCheckRequest("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln")), fast: true},
		{name: "envoy, merged headers", b: must(envoyCheckRequest(false)), fast: true},
		{name: "envoy, header_map", b: must(envoyCheckRequest(true)), fast: true},
		{name: "empty", b: nil, fast: true},
		{name: "empty messages", b: pb(nil).bytes(1, pb(nil).bytes(1, nil).bytes(2, nil).bytes(4, pb(nil).bytes(1, nil).bytes(2, pb(nil).bytes(13, nil)))), fast: true},
		{name: "map entry without key or value", b: inHTTP(pb(nil).bytes(3, nil).bytes(3, pb(nil).str(2, "v"))), fast: true},
		{name: "map key twice: last wins", b: inHTTP(pb(nil).bytes(3, entry("a", "1")).bytes(3, entry("a", "2"))), fast: true},
		{name: "map entry key twice", b: inHTTP(pb(nil).bytes(3, entry("a", "1").str(1, "b"))), fast: true},
		{name: "map entry key twice, a capital first", b: inHTTP(pb(nil).bytes(3, pb(nil).str(1, "A").str(1, "a"))), fast: true},
		{name: "map entry key twice, a capital last", b: inHTTP(pb(nil).bytes(3, pb(nil).str(1, "a").str(1, "A"))), fast: true},
		{name: "headers apart", b: inHTTP(pb(nil).bytes(3, entry("a", "1")).str(2, "GET").bytes(3, entry("b", "2"))), fast: true},
		{name: "string twice: last wins", b: inHTTP(pb(nil).str(2, "GET").str(2, "POST")), fast: true},
		{name: "negative size", b: inHTTP(pb(nil).varint(9, ^uint64(0))), fast: true},
		{name: "raw value not UTF-8 (bytes)", b: inHTTP(pb(nil).bytes(13, pb(nil).bytes(1, pb(nil).str(1, "a").bytes(3, []byte{0xff})))), fast: true},
		{name: "timestamp overflows int32 nanos", b: pb(nil).bytes(1, pb(nil).bytes(4, pb(nil).bytes(1, pb(nil).varint(1, 7).varint(2, 1<<40)))), fast: true},

		{name: "upper-case header name", b: inHTTP(pb(nil).bytes(3, entry("Authorization", "Bearer a")).bytes(3, entry("authorization", "Bearer b"))), fast: true},
		{name: "empty address", b: pb(nil).bytes(1, pb(nil).bytes(1, pb(nil).bytes(1, nil))), fast: true},
		{name: "UDP socket address, no port", b: inPeer(pb(nil).bytes(1, pb(nil).varint(1, 1).str(2, "::1"))), fast: true},
		{name: "port twice: last wins", b: inPeer(pb(nil).bytes(1, pb(nil).varint(3, 1).varint(3, 70000))), fast: true},

		{name: "unknown top field", b: pb(nil).str(2, "x")},
		{name: "pipe address", b: inPeer(pb(nil).bytes(2, pb(nil).str(1, "/run/sock")))},
		{name: "named port", b: inPeer(pb(nil).bytes(1, pb(nil).varint(3, 1).str(4, "https")))},
		{name: "socket address twice", b: inPeer(pb(nil).bytes(1, pb(nil).str(2, "a")).bytes(1, pb(nil).str(2, "b")))},
		{name: "resolver name", b: inPeer(pb(nil).bytes(1, pb(nil).str(5, "r")))},
		{name: "unknown http field", b: inHTTP(pb(nil).str(99, "x"))},
		{name: "unknown map entry field", b: inHTTP(pb(nil).bytes(3, entry("a", "1").str(3, "x")))},
		{name: "known field, other wire type", b: inHTTP(pb(nil).varint(2, 5))},
		{name: "size as bytes", b: inHTTP(pb(nil).str(9, "5"))},
		{name: "fixed32 field", b: protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), 7)},
		{name: "attributes twice: merged", b: pb(nil).bytes(1, pb(nil).bytes(10, entry("a", "1"))).bytes(1, pb(nil).bytes(10, entry("b", "2")))},
		{name: "http twice: merged", b: pb(nil).bytes(1, pb(nil).bytes(4, pb(nil).bytes(2, pb(nil).str(2, "GET")).bytes(2, pb(nil).str(4, "/p"))))},
		{name: "header_map twice", b: inHTTP(pb(nil).bytes(13, pb(nil).bytes(1, entry("a", "1"))).bytes(13, pb(nil).bytes(1, entry("b", "2"))))},
		{name: "address twice", b: pb(nil).bytes(1, pb(nil).bytes(1, pb(nil).bytes(1, nil).bytes(1, nil)))},
		{name: "header value not UTF-8", b: inHTTP(pb(nil).bytes(3, entry("a", "\xff")))},
		{name: "header key not UTF-8", b: inHTTP(pb(nil).bytes(3, entry("\xc3", "v")))},
		{name: "principal not UTF-8", b: pb(nil).bytes(1, pb(nil).bytes(1, pb(nil).str(4, "\xed\xa0\x80")))},
		{name: "truncated", b: must(envoyCheckRequest(false))[:100]},
		{name: "length past the end", b: []byte{0x0a, 0x05, 0x0a}},
		{name: "bad tag", b: []byte{0x00}},
		{name: "garbage metadata", b: pb(nil).bytes(1, pb(nil).bytes(11, []byte{0xff, 0xff}))},
	}
}

// TestUnmarshalCheckRequestMatchesProtobuf: the server's decoder gives what
// proto.Unmarshal gives, an equal message or an error, and decodes
// Envoy's usual requests itself.
func TestUnmarshalCheckRequestMatchesProtobuf(t *testing.T) {
	for _, tc := range decodeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			sameAsProtobuf(t, tc.b)
			err := decodeCheckRequest(tc.b, new(authv3.CheckRequest), new(bool))
			if tc.fast && err != nil {
				t.Errorf("hand decoder left it to protobuf-go: %v", err)
			}
			if !tc.fast && err == nil {
				t.Error("hand decoder took an encoding it should leave to protobuf-go")
			}
		})
	}
}

// sameAsProtobuf fails t unless unmarshalCheckRequest and proto.Unmarshal
// agree on b, the decoded message shares no memory with b, and lowerKeys
// is reported exactly when the hand decoder took b and no header name has
// an upper-case letter.
func sameAsProtobuf(t *testing.T, b []byte) {
	t.Helper()
	want := new(authv3.CheckRequest)
	wantErr := proto.Unmarshal(b, want)
	b = bytes.Clone(b)
	got := new(authv3.CheckRequest)
	lowerKeys, err := unmarshalCheckRequest(b, got)
	hand := decodeCheckRequest(b, new(authv3.CheckRequest), new(bool)) == nil
	upper := false
	for k := range want.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		upper = upper || strings.ContainsAny(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	}
	if lowerKeys != (hand && !upper) {
		t.Errorf("lowerKeys = %v; hand decoder took it: %v, a header name with an upper-case letter: %v", lowerKeys, hand, upper)
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("error %v, protobuf-go's %v", err, wantErr)
	case err != nil:
		if err.Error() != wantErr.Error() {
			t.Errorf("error %q, protobuf-go's %q", err, wantErr)
		}
		return
	case !proto.Equal(got, want):
		t.Fatalf("decoded\n%v\nprotobuf-go decoded\n%v", got, want)
	}
	for i := range b {
		b[i] = 0xff
	}
	if !proto.Equal(got, want) {
		t.Fatal("the decoded request changed with the buffer it was decoded from")
	}
}

// TestUnmarshalCheckRequestRecursionLimit: metadata nested around
// protobuf-go's recursion limit is refused at the same depth by both
// decoders, though the hand decoder hands it to protobuf-go three messages
// down.
func TestUnmarshalCheckRequestRecursionLimit(t *testing.T) {
	// nested is a request whose metadata holds a Struct n Structs deep.
	nested := func(n int) []byte {
		v := pb(nil).varint(1, 0) // Value{null_value}
		for range n {
			v = pb(nil).bytes(5, pb(nil).bytes(1, pb(nil).str(1, "a").bytes(2, v)))
		}
		meta := pb(nil).bytes(1, pb(nil).str(1, "f").bytes(2, pb(nil).bytes(1, pb(nil).str(1, "a").bytes(2, v))))
		return pb(nil).bytes(1, pb(nil).bytes(11, meta))
	}
	ok := func(n int) bool { return proto.Unmarshal(nested(n), new(authv3.CheckRequest)) == nil }
	lo, hi := 1, 8000 // ok(lo), !ok(hi)
	if !ok(lo) || ok(hi) {
		t.Fatalf("protobuf-go's recursion limit is not between %d and %d Structs", lo, hi)
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	for _, n := range []int{lo - 1, lo, hi, hi + 1} {
		sameAsProtobuf(t, nested(n))
	}
}

// TestUnmarshalCheckRequestMemoryFollowsTheMessage: room made ahead for a
// map's or a list's entries is bounded, so a request that repeats one short
// entry costs about what protobuf-go spends on it, not a table for every
// repeat (found by review: a 2 MiB request made an 84 MB table). Also when
// the request is refused after the room was made.
func TestUnmarshalCheckRequestMemoryFollowsTheMessage(t *testing.T) {
	repeat := func(num protowire.Number, entry []byte, n int) pb {
		var m pb
		for range n {
			m = m.bytes(num, entry)
		}
		return m
	}
	const n = 1 << 16 // 64k entries of 2 bytes
	bad := pb(nil).bytes(1, []byte{0xff})
	for name, b := range map[string][]byte{
		"headers, one entry again and again":          inHTTP(repeat(3, nil, n)),
		"headers, a bad second entry, then repeats":   inHTTP(append(pb(nil).bytes(3, pb(nil).str(1, "a")).bytes(3, []byte{0xff}), repeat(3, nil, n)...)),
		"context extensions, again and again":         pb(nil).bytes(1, repeat(10, nil, n)),
		"header_map, a bad first entry, then repeats": inHTTP(pb(nil).bytes(13, append(bad, repeat(1, nil, n)...))),
		"header_map, empty entries":                   inHTTP(pb(nil).bytes(13, repeat(1, nil, n))),
	} {
		t.Run(name, func(t *testing.T) {
			sameAsProtobuf(t, b)
			hand := allocated(func() { _, _ = unmarshalCheckRequest(b, new(authv3.CheckRequest)) })
			proto := allocated(func() { _ = proto.Unmarshal(b, new(authv3.CheckRequest)) })
			// header_map's entries are messages of their own: protobuf-go
			// allocates each; the decoder shares the first ones.
			if hand > 2*proto+64<<10 {
				t.Errorf("the decoder allocated %d bytes for a %d-byte request; protobuf-go %d", hand, len(b), proto)
			}
		})
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzUnmarshalCheckRequest: whatever arrives, the server's decoder agrees
// with proto.Unmarshal and keeps nothing of gRPC's buffer.
func FuzzUnmarshalCheckRequest(f *testing.F) {
	for _, tc := range decodeCases(f) {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsProtobuf(t, b)
	})
}

// TestFastCodecDecodesCheckRequests: the codec decodes a CheckRequest, and a
// checkCall with its size on the wire, through unmarshalCheckRequest, from
// a request split over several buffers as gRPC may hand it.
func TestFastCodecDecodesCheckRequests(t *testing.T) {
	want := envoyCheckRequest(true)
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	split := mem.BufferSlice{mem.SliceBuffer(b[:7]), mem.SliceBuffer(b[7:])}
	var call checkCall
	if err := newFastCodec().Unmarshal(split, &call); err != nil {
		t.Fatal(err)
	}
	if call.wireBytes != len(b) || !call.lowerKeys || !proto.Equal(&call.req, want) {
		t.Errorf("checkCall: %d bytes (want %d), lower-case keys %v, request equal: %v", call.wireBytes, len(b), call.lowerKeys, proto.Equal(&call.req, want))
	}
	got := new(authv3.CheckRequest)
	if err := newFastCodec().Unmarshal(split, got); err != nil || !proto.Equal(got, want) {
		t.Errorf("CheckRequest: %v, equal: %v", err, proto.Equal(got, want))
	}
	bad := mem.BufferSlice{mem.SliceBuffer(pb(nil).bytes(1, pb(nil).bytes(10, pb(nil).str(1, "\xff"))))}
	if err := newFastCodec().Unmarshal(bad, new(authv3.CheckRequest)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("a request with a string that is not UTF-8: %v, want protobuf-go's error", err)
	}
}

// TestFastCodecLeavesOversizedCallsUndecoded: a Check call over
// listen.max_request_bytes is answered from its size alone (431), so the
// codec does not decode it: a large request can take many times its size
// in memory once decoded. At the bound, it is decoded.
func TestFastCodecLeavesOversizedCallsUndecoded(t *testing.T) {
	b, err := proto.Marshal(envoyCheckRequest(false))
	if err != nil {
		t.Fatal(err)
	}
	over := checkCall{limit: len(b) - 1}
	if err := newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &over); err != nil {
		t.Fatal(err)
	}
	if !over.undecoded || over.wireBytes != len(b) || over.req.GetAttributes() != nil {
		t.Errorf("over the limit: undecoded %v, %d bytes, request %v; want it undecoded", over.undecoded, over.wireBytes, &over.req)
	}
	at := checkCall{limit: len(b)}
	if err := newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &at); err != nil || at.undecoded || at.req.GetAttributes() == nil {
		t.Errorf("at the limit: %v, undecoded %v; want it decoded", err, at.undecoded)
	}
}

// BenchmarkUnmarshalCheckRequest compares the server's decoder with
// protobuf-go's on the load tool's request and on Envoy's.
func BenchmarkUnmarshalCheckRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"load-tool", benchCheckRequest("eyJhbGciOiJFZERTQSJ9." + strings.Repeat("eyJzdWIiOiJhIn0", 20) + ".c2ln")},
		{"envoy-merged", envoyCheckRequest(false)},
		{"envoy-header_map", envoyCheckRequest(true)},
	} {
		// No filter before ext_authz set dynamic metadata: Envoy sends an
		// empty metadata_context.
		c.req.Attributes.MetadataContext = &corev3.Metadata{}
		raw, err := proto.Marshal(c.req)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/protobuf-go", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := proto.Unmarshal(raw, new(authv3.CheckRequest)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/server", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := unmarshalCheckRequest(raw, new(authv3.CheckRequest)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
