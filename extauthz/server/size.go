package server

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// overMaxRequestBytes reports whether proto.Size(req) > max without paying
// for protobuf-go's reflective walk of the header maps in the common case:
// sizing a map[string]string field allocates a key and a value per entry (26
// allocations for a dozen headers, most of a warm Check's). It sizes req
// with its two maps (HTTP headers, context extensions) taken out, adds their
// exact wire size and a bound on how much the enclosing length prefixes can
// grow, and only when that upper bound is over max sizes req exactly. The
// answer is always proto.Size(req) > max.
//
// The maps are put back before it returns; req is this Check's own.
func overMaxRequestBytes(req *authv3.CheckRequest, max int) bool {
	attrs := req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	if attrs == nil {
		return proto.Size(req) > max
	}
	ext := attrs.ContextExtensions
	attrs.ContextExtensions = nil
	var headers map[string]string
	if http != nil {
		headers = http.Headers
		http.Headers = nil
	}
	rest := proto.Size(req)
	attrs.ContextExtensions = ext
	if http != nil {
		http.Headers = headers
	}
	// Adding n bytes inside a nested message can lengthen the varint length
	// prefix of each of its enclosing messages (HttpRequest, Request,
	// AttributeContext) by at most varintSlack bytes.
	const nesting, varintSlack = 3, 9
	bound := rest + mapSize(3, headers) + mapSize(10, ext) + nesting*varintSlack
	if bound <= max {
		return false
	}
	return proto.Size(req) > max
}

// mapSize is the wire size of a map<string,string> field numbered num.
func mapSize(num protowire.Number, m map[string]string) int {
	n := 0
	for k, v := range m {
		entry := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
		n += protowire.SizeTag(num) + protowire.SizeBytes(entry)
	}
	return n
}
