package server

import (
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec fastCodec falls back on
	"google.golang.org/grpc/mem"
)

// vtMarshaler is the marshalling code protoc-gen-go-vtproto generates.
// go-control-plane ships it for every Envoy API behind the build tag
// vtprotobuf (its *_vtproto.pb.go files); release builds (Dockerfile, the
// load tool) set the tag. The Strict variant writes fields in field-number
// order, byte for byte what proto.Marshal writes.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// FastMarshal reports whether this binary marshals Envoy's messages with
// go-control-plane's generated code (built with -tags vtprotobuf) rather
// than with protobuf-go's reflection-driven encoder.
func FastMarshal() bool {
	_, ok := any((*authv3.CheckResponse)(nil)).(vtMarshaler)
	return ok
}

// fastCodec is the gRPC server's codec: gRPC's own protobuf codec, except
// that a message with generated vtprotobuf code (Envoy's, in a build with
// -tags vtprotobuf) is marshalled by that code. An allow answer carrying a
// 600-byte minted token is then written in ≈ 0.12 µs instead of ≈ 0.85 µs;
// the codec call with its buffer, BenchmarkAnswerEncoding, ≈ 0.5 µs instead
// of ≈ 0.87 µs. A CheckRequest is decoded by unmarshalCheckRequest (hand
// written: go-control-plane ships no generated decoding code), any other
// message by gRPC's codec.
//
// protobuf-go refuses to marshal a string field that is not valid UTF-8; the
// generated code does not check. Every string of an answer is checked where
// it is built (response.Builder refuses a header value that is not valid
// UTF-8), and FuzzAnswerEncoding holds both encoders to the same bytes.
type fastCodec struct {
	proto encoding.CodecV2
}

// newFastCodec returns the codec, falling back on gRPC's registered
// protobuf codec.
func newFastCodec() fastCodec {
	return fastCodec{proto: encoding.GetCodecV2("proto")}
}

// Marshal encodes v with its generated code when it has some; an
// encodedAnswer is sent as it was encoded.
func (c fastCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedAnswer); ok {
		// gRPC only reads it, possibly after handleCheck returned (its
		// writer queues the buffer): it must never be written to.
		return mem.BufferSlice{mem.SliceBuffer(e.wire)}, nil
	}
	m, ok := v.(vtMarshaler)
	if !ok {
		return c.proto.Marshal(v)
	}
	// Answers under gRPC's pooling threshold (a warm allow is ≈ 620 bytes)
	// get a buffer of their own, as gRPC's codec gives them; larger ones one
	// of gRPC's pool (of length size), returned to it once sent.
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if err := marshalExactly(m, buf); err != nil {
			return nil, fmt.Errorf("marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if err := marshalExactly(m, *buf); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// encodedAnswer is a Check's answer that was kept, for a cached principal,
// with its encoding (pipeline.Outcome.Wire, made by encodeAnswer when the
// answer was built): a warm Check sends those bytes instead of sizing and
// encoding the same ≈ 620-byte answer again, which took ≈ 2.6 µs of the
// server's CPU per Check under load where the floor's whole Check took 44.
// It is the CheckResponse too (embedded), so that anything else handed it
// (another codec, a stats handler) sees the answer itself.
type encodedAnswer struct {
	*authv3.CheckResponse // what wire encodes; kept answers are never modified
	wire                  []byte
}

// encodeAnswer encodes resp as fastCodec.Marshal does, into bytes of its
// own: the server's pipeline.Env.EncodeAnswer.
func encodeAnswer(resp *authv3.CheckResponse) ([]byte, error) {
	data, err := newFastCodec().Marshal(resp)
	if err != nil {
		return nil, err
	}
	defer data.Free()
	return data.Materialize(), nil
}

// marshalExactly fills buf, sized by SizeVT, from its end (generated code
// writes backwards); a message that wrote fewer bytes would leave the front
// of buf unwritten, so it is an error rather than an answer.
func marshalExactly(m vtMarshaler, buf []byte) error {
	n, err := m.MarshalToSizedBufferVTStrict(buf)
	if err == nil && n != len(buf) {
		err = fmt.Errorf("wrote %d of %d bytes", n, len(buf))
	}
	return err
}

// Unmarshal decodes a CheckRequest with unmarshalCheckRequest, and anything
// else with gRPC's protobuf codec; a checkCall also records how many bytes
// its request came in, and is left undecoded when that is over its limit.
func (c fastCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *checkCall:
		m.wireBytes = data.Len()
		if m.limit > 0 && m.wireBytes > m.limit {
			m.undecoded = true
			return nil
		}
		var err error
		m.lowerKeys, err = unmarshalCheck(data, &m.req)
		return err
	case *authv3.CheckRequest:
		_, err := unmarshalCheck(data, m)
		return err
	}
	return c.proto.Unmarshal(data, v)
}

// unmarshalCheck decodes data into m as gRPC's codec would, with
// unmarshalCheckRequest.
func unmarshalCheck(data mem.BufferSlice, m *authv3.CheckRequest) (lowerKeys bool, _ error) {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	m.Reset() // as proto.Unmarshal does: gRPC hands new messages anyway
	return unmarshalCheckRequest(buf.ReadOnlyData(), m)
}

// checkCall is what checkService decodes a Check call into: the request
// and what was learnt decoding it; limit, set before, is
// listen.max_request_bytes (0: none), over which the request is not decoded
// at all. answer is what handleCheck gives gRPC when the answer was kept
// with its encoding.
type checkCall struct {
	req   authv3.CheckRequest
	limit int
	received
	answer encodedAnswer
}

// received is what the codec learnt of a request as it decoded it.
type received struct {
	// wireBytes is the request's size on the wire, which
	// listen.max_request_bytes bounds; -1 when unknown.
	wireBytes int
	// lowerKeys: no header name has an upper-case letter
	// (unmarshalCheckRequest).
	lowerKeys bool
	// undecoded: the request was over checkCall.limit and left undecoded,
	// for a decoded request that large could take many times its size in
	// memory (a map entry per few bytes).
	undecoded bool
}

// Name is the content-subtype the codec serves: "proto", gRPC's default.
func (c fastCodec) Name() string { return c.proto.Name() }
