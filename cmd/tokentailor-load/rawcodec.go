package main

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// checkMethod is the full gRPC method name of ext_authz's Check.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawRequest is a CheckRequest marshalled once, sent as is: a warm request
// goes out hundreds of thousands of times, and marshalling its dozen headers
// again for each call was generator CPU that had nothing to do with the
// server under test.
type rawRequest []byte

// rawCodec sends rawRequests as they are and decodes answers with gRPC's
// own proto codec. It is forced per call (grpc.ForceCodecV2), so gRPC's
// registry is not touched.
type rawCodec struct{ proto encoding.CodecV2 }

func newRawCodec() rawCodec { return rawCodec{proto: encoding.GetCodecV2(proto.Name)} }

// Marshal hands out a rawRequest's bytes without a copy; SliceBuffer's Free
// does nothing, so the same bytes may be in flight on several calls.
func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return nil, fmt.Errorf("raw codec: cannot send %T", v)
}

// Unmarshal decodes an answer as protobuf.
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is the content subtype: the bytes are protobuf.
func (c rawCodec) Name() string { return proto.Name }
