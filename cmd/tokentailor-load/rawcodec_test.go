package main

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// verdictAnswers are answers of the shapes the floor and tokentailor send,
// and merged ones no server sends.
func verdictAnswers(t testing.TB) map[string][]byte {
	must := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hv := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	deny := func(code int32, http typev3.StatusCode) []byte {
		return must(&authv3.CheckResponse{Status: &rpcstatus.Status{Code: code, Message: "no"},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: http}, Headers: []*corev3.HeaderValueOption{hv("www-authenticate", `Bearer error="invalid_token"`)},
				Body: `{"error":"invalid_token"}`}}})
	}
	status := func(code uint64) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), code))
	}
	return map[string][]byte{
		"floor": must(&authv3.CheckResponse{Status: &rpcstatus.Status{},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hv("x-floor", "ok")}}}}),
		"allow with a minted token and metadata": must(&authv3.CheckResponse{Status: &rpcstatus.Status{}, DynamicMetadata: meta,
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{hv("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.c2ln")}, HeadersToRemove: []string{"x-internal"}}}}),
		"deny 401":            deny(16, typev3.StatusCode_Unauthorized),
		"deny 403":            deny(7, typev3.StatusCode_Forbidden),
		"error 503":           deny(14, typev3.StatusCode_ServiceUnavailable),
		"empty":               nil,
		"status twice":        append(status(7), status(0)...),
		"status twice, later": append(status(0), status(16)...),
		"truncated":           deny(16, typev3.StatusCode_Unauthorized)[:9],
		"garbage":             {0xff, 0xff, 0xff},
	}
}

// TestVerdictMatchesProtobuf: the generator reads the same status codes as
// a whole decode with protobuf-go would give, and refuses what protobuf-go
// cannot decode.
func TestVerdictMatchesProtobuf(t *testing.T) {
	for name, b := range verdictAnswers(t) {
		t.Run(name, func(t *testing.T) {
			sameVerdictAsProtobuf(t, b, true)
		})
	}
}

// sameVerdictAsProtobuf fails t when verdict.read disagrees with
// proto.Unmarshal on b; with strict, also when only one of them fails.
func sameVerdictAsProtobuf(t *testing.T, b []byte, strict bool) {
	t.Helper()
	var want authv3.CheckResponse
	wantErr := proto.Unmarshal(b, &want)
	var got verdict
	err := got.read(b)
	switch {
	case wantErr == nil && err != nil:
		t.Fatalf("read: %v; protobuf-go decodes it", err)
	case wantErr != nil && err == nil && strict:
		t.Fatalf("read took an answer protobuf-go refuses (%v)", wantErr)
	case wantErr == nil:
		if got.code != want.GetStatus().GetCode() || got.httpStatus != int32(want.GetDeniedResponse().GetStatus().GetCode()) {
			t.Fatalf("read code %d, HTTP %d; protobuf-go: %d, HTTP %d", got.code, got.httpStatus,
				want.GetStatus().GetCode(), want.GetDeniedResponse().GetStatus().GetCode())
		}
	}
}

// FuzzVerdict: whatever a server answers, the generator never reads
// another verdict than protobuf-go's from an answer protobuf-go decodes (it
// may take an answer protobuf-go refuses for a string that is not UTF-8:
// it reads no strings).
func FuzzVerdict(f *testing.F) {
	for _, b := range verdictAnswers(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameVerdictAsProtobuf(t, b, false)
	})
}

// TestRawCodecReadsVerdicts: the codec hands a verdict its answer's bytes,
// even split over buffers, and anything else to protobuf-go.
func TestRawCodecReadsVerdicts(t *testing.T) {
	b := verdictAnswers(t)["deny 403"]
	split := mem.BufferSlice{mem.SliceBuffer(b[:5]), mem.SliceBuffer(b[5:])}
	var v verdict
	if err := newRawCodec().Unmarshal(split, &v); err != nil || v.code != 7 || v.httpStatus != 403 {
		t.Errorf("verdict %+v, %v; want code 7, HTTP 403", v, err)
	}
	var resp authv3.CheckResponse
	if err := newRawCodec().Unmarshal(split, &resp); err != nil || resp.GetStatus().GetCode() != 7 {
		t.Errorf("CheckResponse %v, %v", &resp, err)
	}
}

// BenchmarkVerdict: what the generator spends reading an answer, against a
// whole decode with protobuf-go, for the floor's answer and an allow with a
// minted token.
func BenchmarkVerdict(b *testing.B) {
	answers := verdictAnswers(b)
	for _, name := range []string{"floor", "allow with a minted token and metadata"} {
		raw := answers[name]
		b.Run(name+"/protobuf-go", func(b *testing.B) {
			b.ReportAllocs()
			var resp authv3.CheckResponse
			for b.Loop() {
				proto.Reset(&resp)
				if err := proto.Unmarshal(raw, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/verdict", func(b *testing.B) {
			b.ReportAllocs()
			var v verdict
			for b.Loop() {
				if err := v.read(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
