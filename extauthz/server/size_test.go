package server

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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
