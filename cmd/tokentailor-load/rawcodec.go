package main

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

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

// rawCodec sends rawRequests as they are and reads verdicts off answers. It is forced per call (grpc.ForceCodecV2), so gRPC's
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

// Unmarshal reads a verdict off an answer's bytes (see verdict); anything
// else it decodes as protobuf.
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if a, ok := v.(*verdict); ok {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		return a.read(buf.ReadOnlyData())
	}
	return c.proto.Unmarshal(data, v)
}

// verdict is what the generator needs of a CheckResponse: its gRPC status
// code (0 allows) and, for a denial, the HTTP status it asks Envoy to send.
// Reading these two numbers off the wire, and skipping the rest, costs the
// generator the same for the floor's 40-byte answer as for tokentailor's
// 600-byte one with its minted token; decoding whole answers with
// protobuf-go made the generator's cost grow with the server's answer.
type verdict struct {
	code, httpStatus int32
}

// read sets v from the wire-format CheckResponse b as proto.Unmarshal would
// set status.code and denied_response.status.code (a message sent twice is
// merged: a later code wins); an answer that is not well-formed protobuf is
// an error.
func (v *verdict) read(b []byte) error {
	*v = verdict{}
	return eachField(b, func(num protowire.Number, typ protowire.Type, payload []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType: // status: google.rpc.Status
			return readVarint(payload, 1, &v.code)
		case num == 2 && typ == protowire.BytesType: // denied_response
			return eachField(payload, func(num protowire.Number, typ protowire.Type, payload []byte) error {
				if num == 1 && typ == protowire.BytesType { // status: envoy.type.v3.HttpStatus
					return readVarint(payload, 1, &v.httpStatus)
				}
				return nil
			})
		}
		return nil
	})
}

// readVarint sets *to from every varint field num of the message b.
func readVarint(b []byte, num protowire.Number, to *int32) error {
	return eachField(b, func(n protowire.Number, typ protowire.Type, payload []byte) error {
		if n == num && typ == protowire.VarintType {
			x, _ := protowire.ConsumeVarint(payload)
			*to = int32(x)
		}
		return nil
	})
}

// eachField calls f with every field of the message b: a length-delimited
// field's payload, or the bytes holding any other field's value.
func eachField(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("answer: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var payload []byte
		if typ == protowire.BytesType {
			payload, n = protowire.ConsumeBytes(b)
		} else {
			payload, n = b, protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("answer: %w", protowire.ParseError(n))
		}
		if typ != protowire.BytesType {
			payload = payload[:n]
		}
		b = b[n:]
		if err := f(num, typ, payload); err != nil {
			return err
		}
	}
	return nil
}

// Name is the content subtype: the bytes are protobuf.
func (c rawCodec) Name() string { return proto.Name }
