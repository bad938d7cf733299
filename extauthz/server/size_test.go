package server

import (
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// overMaxRequestBytes must answer exactly proto.Size(req) > max, at every
// max around the real size, and leave req as it was.
func TestOverMaxRequestBytesIsProtoSize(t *testing.T) {
	httpReq := func(headers map[string]string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/orders/1", Host: "orders.example.com", Headers: headers,
			}},
			ContextExtensions: map[string]string{"route": "orders-read"},
		}}
	}
	tests := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{name: "empty request", req: &authv3.CheckRequest{}},
		{name: "attributes without http", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: map[string]string{"a": "b"}}}},
		{name: "a dozen headers", req: httpReq(map[string]string{
			":authority": "orders.example.com", ":path": "/orders/1", ":method": "GET", "accept": "application/json",
			"authorization": "Bearer " + strings.Repeat("t", 700), "user-agent": "x", "x-request-id": "3f1b"})},
		{name: "empty keys and values", req: httpReq(map[string]string{"": "", "x-empty": ""})},
		{name: "a header that lengthens every length prefix", req: httpReq(map[string]string{"x-big": strings.Repeat("a", 1<<21)})},
		{name: "raw header_map and metadata beside the maps", req: func() *authv3.CheckRequest {
			r := httpReq(map[string]string{"a": "b"})
			r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "k", RawValue: []byte(strings.Repeat("v", 300))}}}
			r.Attributes.Source = &authv3.AttributeContext_Peer{Principal: "spiffe://x", Labels: map[string]string{"l": "v"}}
			return r
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.req)
			size := proto.Size(tc.req)
			for _, max := range []int{0, 1, size - 100, size - 1, size, size + 1, size + 30, size + 100, 64 << 20} {
				if got, want := overMaxRequestBytes(tc.req, max), size > max; got != want {
					t.Errorf("max %d, size %d: over = %v, want %v", max, size, got, want)
				}
			}
			if !proto.Equal(before, tc.req) {
				t.Error("the request changed")
			}
		})
	}
}

// The point of overMaxRequestBytes: a request far under the bound is judged
// without an allocation (proto.Size allocates per map entry).
func TestOverMaxRequestBytesDoesNotAllocate(t *testing.T) {
	req := benchCheckRequest(strings.Repeat("t", 700))
	if n := testing.AllocsPerRun(100, func() { overMaxRequestBytes(req, 1<<20) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// tooLarge agrees with the canonical size even for an encoding smaller than
// it: map entries that leave out their empty value field decode to entries
// proto.Size counts two bytes larger.
func TestTooLarge(t *testing.T) {
	var headers []byte
	for i := range 400 {
		entry := protowire.AppendTag(nil, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, fmt.Sprintf("x-%03d", i)) // no field 2: value ""
		headers = protowire.AppendTag(headers, 3, protowire.BytesType)
		headers = protowire.AppendBytes(headers, entry)
	}
	wrap := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	wire := wrap(1, wrap(4, wrap(2, headers))) // attributes(1).request(4).http(2).headers(3)
	var crafted authv3.CheckRequest
	if err := proto.Unmarshal(wire, &crafted); err != nil {
		t.Fatal(err)
	}
	size := proto.Size(&crafted)
	if size <= len(wire) {
		t.Fatalf("crafted encoding %d bytes, canonical %d: not smaller", len(wire), size)
	}
	between := (len(wire) + size) / 2
	small := benchCheckRequest("eyJ.a.b")
	tests := []struct {
		name      string
		req       *authv3.CheckRequest
		wire, max int
		want      bool
	}{
		{name: "crafted: under on the wire, over canonically", req: &crafted, wire: len(wire), max: between, want: true},
		{name: "crafted: under both", req: &crafted, wire: len(wire), max: size, want: false},
		{name: "over on the wire only", req: small, wire: 1 << 20, max: 1 << 19, want: true},
		{name: "far under", req: small, wire: proto.Size(small), max: 1 << 20, want: false},
		{name: "unknown wire size: canonical", req: &crafted, wire: -1, max: between, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tooLarge(tt.req, tt.wire, tt.max); got != tt.want {
				t.Fatalf("tooLarge(wire %d, max %d) = %v, want %v (canonical %d)", tt.wire, tt.max, got, tt.want, proto.Size(tt.req))
			}
		})
	}
}
