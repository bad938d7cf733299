package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/response"
)

// codecAnswers are answers of every shape the server sends: allows of each
// mode, public allows, denials of each status and the health service's.
func codecAnswers() map[string]proto.Message {
	b := response.NewBuilder("api")
	b.InternalHeaders = []string{"authorization", "x-internal-token"}
	minted := "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0." + strings.Repeat("eyJzdWIiOiJhbGljZSJ9", 25) + ".c2ln"
	sent := map[string]string{"authorization": "Bearer x", "x-internal-token": "spoofed"}
	m := map[string]proto.Message{
		"allow mint": b.Allow(&extauthz.Grant{Mode: extauthz.ModeMint, Header: "authorization", Prefix: "Bearer "},
			extauthz.Token{Value: minted}, extauthz.Credential{Header: "authorization"}, sent),
		"allow forward, own header, strip": b.Allow(&extauthz.Grant{Mode: extauthz.ModeForward, Header: "x-internal-token", StripCredential: true},
			extauthz.Token{Value: "tok-é"}, extauthz.Credential{Header: "authorization"}, sent),
		"allow no token": b.Allow(&extauthz.Grant{Mode: extauthz.ModeNone, Header: "x-internal-token"}, extauthz.Token{}, extauthz.Credential{}, nil),
		"allow public":   b.AllowPublic(&extauthz.Grant{StripCredential: true}),
		"allow, 2 KB token": b.Allow(&extauthz.Grant{Mode: extauthz.ModeMint, Header: "authorization", Prefix: "Bearer "},
			extauthz.Token{Value: minted + strings.Repeat("A", 2048)}, extauthz.Credential{}, nil),
		"floor": &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-floor", Value: "ok"}}}}}},
		"health":             &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING},
		"request (has maps)": benchCheckRequest("eyJ.a.b"),
	}
	for _, err := range []error{extauthz.ErrNoCredential, extauthz.ErrInsufficientScope, extauthz.ErrTokenExpired,
		extauthz.ErrIssuerUnavailable, extauthz.ErrRequestTooLarge, errors.New("unclassified")} {
		resp, _ := b.Deny(err)
		m["deny "+err.Error()] = resp
	}
	return m
}

// marshalled runs the server's codec on m and returns its bytes.
func marshalled(t testing.TB, m proto.Message) []byte {
	t.Helper()
	data, err := newFastCodec().Marshal(m)
	if err != nil {
		t.Fatalf("fastCodec.Marshal(%T): %v", m, err)
	}
	defer data.Free()
	return data.Materialize()
}

// TestFastCodecMatchesProtobuf: whichever encoder a build uses, an answer's
// bytes are protobuf-go's, byte for byte (messages with maps, whose order
// neither encoder fixes, decode to an equal message), and they decode back.
func TestFastCodecMatchesProtobuf(t *testing.T) {
	t.Logf("generated marshalling in use: %v", FastMarshal())
	for name, m := range codecAnswers() {
		t.Run(name, func(t *testing.T) {
			got := marshalled(t, m)
			want, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(got)}, back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !proto.Equal(back, m) {
				t.Fatalf("decoded %v, want %v", back, m)
			}
			if _, maps := m.(*authv3.CheckRequest); !maps && !bytes.Equal(got, want) {
				t.Fatalf("bytes differ from proto.Marshal:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestFastCodecName: the codec serves gRPC's default content-subtype, so
// Envoy's requests (application/grpc) reach it.
func TestFastCodecName(t *testing.T) {
	if got := newFastCodec().Name(); got != "proto" {
		t.Fatalf("Name() = %q", got)
	}
}

// FuzzAnswerEncoding: for any token and prefix, and any header names config
// accepts, the answer response.Builder makes is one protobuf-go can marshal
// (valid UTF-8 everywhere), and the server's codec writes the same bytes.
func FuzzAnswerEncoding(f *testing.F) {
	f.Add("eyJ.a.b", "Bearer ", "authorization", "authorization", "x-internal-token", uint8(0), true)
	f.Add("t\xff", "", "x-token", "cookie", "authorization", uint8(1), false)
	f.Add("tok-é", "B\xc3 ", "x-token", "", "x-token", uint8(2), true)
	modes := []extauthz.Mode{extauthz.ModeMint, extauthz.ModeForward, extauthz.ModeExchange, extauthz.ModeNone}
	f.Fuzz(func(t *testing.T, tok, prefix, header, credHeader, spoofed string, mode uint8, strip bool) {
		b := response.NewBuilder("api")
		b.InternalHeaders = []string{"authorization", "x-internal-token", "x-token"}
		g := &extauthz.Grant{Mode: modes[int(mode)%len(modes)], Header: header, Prefix: prefix, StripCredential: strip}
		if g.Mode == extauthz.ModeMint && !validMinted(tok) {
			return // a minted token is base64url and dots by construction
		}
		for _, h := range []string{header, credHeader} {
			if h != "" && !httpguts.ValidHeaderFieldName(h) {
				return // config refuses it (config.checkHeaderName)
			}
		}
		resp := b.Allow(g, extauthz.Token{Value: tok}, extauthz.Credential{Header: credHeader}, map[string]string{spoofed: "x"})
		want, err := proto.Marshal(resp)
		if err != nil {
			t.Fatalf("Builder made an answer protobuf-go cannot marshal: %v", err)
		}
		if got := marshalled(t, resp); !bytes.Equal(got, want) {
			t.Fatalf("bytes differ from proto.Marshal:\n got %x\nwant %x", got, want)
		}
	})
}

// validMinted reports whether s could be a token extauthz/mint made.
func validMinted(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// BenchmarkAnswerEncoding: the server's codec on a warm allow answer (a
// 600-byte minted token) against gRPC's protobuf codec, and the same answer
// kept with its encoding (kept), which is sent as it is.
func BenchmarkAnswerEncoding(b *testing.B) {
	resp := codecAnswers()["allow mint"]
	wire, err := encodeAnswer(resp.(*authv3.CheckResponse))
	if err != nil {
		b.Fatal(err)
	}
	kept := &encodedAnswer{CheckResponse: resp.(*authv3.CheckResponse), wire: wire}
	for _, c := range []struct {
		name  string
		codec interface {
			Marshal(any) (mem.BufferSlice, error)
		}
		msg any
	}{{"fast", newFastCodec(), resp}, {"grpc-proto", newFastCodec().proto, resp}, {"kept", newFastCodec(), kept}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(c.msg)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}

// checkService is the generated service under another handler: same name,
// method, handler type and proto file.
func TestCheckServiceIsTheGeneratedOne(t *testing.T) {
	gen := &authv3.Authorization_ServiceDesc
	if checkService.ServiceName != gen.ServiceName || checkService.Metadata != gen.Metadata ||
		len(checkService.Methods) != len(gen.Methods) || len(checkService.Streams) != len(gen.Streams) {
		t.Fatalf("checkService %+v differs from the generated %+v", checkService, *gen)
	}
	for i, m := range gen.Methods {
		if checkService.Methods[i].MethodName != m.MethodName {
			t.Fatalf("method %d: %q, generated %q", i, checkService.Methods[i].MethodName, m.MethodName)
		}
	}
	if reflect.TypeOf(checkService.HandlerType) != reflect.TypeOf(gen.HandlerType) {
		t.Fatalf("handler type %T, generated %T", checkService.HandlerType, gen.HandlerType)
	}
}

// handleCheck hands Check the size the codec recorded, and runs through a
// server interceptor as a generated handler does; a request the interceptor
// replaces is sized again.
func TestHandleCheck(t *testing.T) {
	e := newBenchEnvShared(t, "EdDSA", 100, nil)
	e.pipe.Config.Listen.MaxRequestBytes = 4096
	req := benchCheckRequest(e.jwt(t, "ES256", "alice"))
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	dec := func(claimed int) func(any) error {
		return func(v any) error {
			if err := newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, v); err != nil {
				return err
			}
			if claimed >= 0 {
				v.(*checkCall).wireBytes = claimed
			}
			return nil
		}
	}
	status := func(v any, err error) int32 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := v.(*encodedAnswer); ok {
			v = e.CheckResponse // a warm allow, kept with its encoding
		}
		return int32(v.(*authv3.CheckResponse).GetDeniedResponse().GetStatus().GetCode())
	}
	pass := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	replace := func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, proto.Clone(req))
	}
	tests := []struct {
		name        string
		claimed     int // wire size the codec reports; -1: the real one
		interceptor grpc.UnaryServerInterceptor
		want        int32 // denial status; 0 is an allow
	}{
		{name: "the real size", claimed: -1, want: 0},
		{name: "over the bound on the wire", claimed: 4097, want: 431},
		{name: "interceptor, over on the wire", claimed: 4097, interceptor: pass, want: 431},
		{name: "interceptor replaced the request: sized again", claimed: 4097, interceptor: replace, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status(handleCheck(e.authz, context.Background(), dec(tt.claimed), tt.interceptor)); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
	var call checkCall
	if err := newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &call); err != nil || call.wireBytes != len(wire) || !proto.Equal(&call.req, req) {
		t.Fatalf("codec recorded %d bytes (want %d), err %v", call.wireBytes, len(wire), err)
	}
}

// TestWarmAnswerSentEncoded: from a token's second Check on, its answer is
// kept with its encoding, and handleCheck hands gRPC that encoding, which
// fastCodec sends as it is; over a real gRPC connection every Check still
// decodes to the answer an in-process Check gives. An interceptor gets the
// CheckResponse itself.
func TestWarmAnswerSentEncoded(t *testing.T) {
	e := newBenchEnvShared(t, "EdDSA", 100, nil)
	req := benchCheckRequest(e.jwt(t, "ES256", "alice"))
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	dec := func(v any) error { return newFastCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, v) }
	var kept *encodedAnswer
	for i := range 4 {
		v, err := handleCheck(e.authz, context.Background(), dec, nil)
		if err != nil {
			t.Fatal(err)
		}
		enc, ok := v.(*encodedAnswer)
		if i == 0 {
			if ok {
				t.Fatal("the first Check of a token came back encoded: nothing of a token seen once is kept")
			}
			continue
		}
		if !ok {
			t.Fatalf("Check %d answered %T, want the kept encoding", i+1, v)
		}
		if enc.CheckResponse.GetOkResponse() == nil || !bytes.Equal(enc.wire, marshalled(t, enc.CheckResponse)) {
			t.Fatalf("Check %d: the kept encoding is not its answer's", i+1)
		}
		if kept != nil && (kept.CheckResponse != enc.CheckResponse || &kept.wire[0] != &enc.wire[0]) {
			t.Fatalf("Check %d encoded its answer again", i+1)
		}
		kept = enc
	}
	data, err := newFastCodec().Marshal(kept)
	if err != nil || !bytes.Equal(data.Materialize(), kept.wire) {
		t.Fatalf("fastCodec sent %x (err %v), want the kept bytes", data.Materialize(), err)
	}
	pass := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	if v, err := handleCheck(e.authz, context.Background(), dec, pass); err != nil || v.(*authv3.CheckResponse) != kept.CheckResponse {
		t.Fatalf("through an interceptor: %T %v, want the kept CheckResponse", v, err)
	}

	client := serveUnix(t, func(s *grpc.Server) { s.RegisterService(&checkService, e.authz) })
	other := benchCheckRequest(e.jwt(t, "ES256", "bob"))
	for range 2 { // cached from its second Check on: the same answer from then on
		if _, err := e.authz.Check(context.Background(), other); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		r := req
		if i%2 == 1 {
			r = other // another principal's kept answer in between
		}
		got, err := client.Check(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		// The minted token is the principal's own, whichever answer was
		// kept last (a check that does not lean on the kept answer).
		sub := "alice"
		if i%2 == 1 {
			sub = "bob"
		}
		minted := strings.Split(got.GetOkResponse().GetHeaders()[0].GetHeader().GetValue(), ".")
		if payload, err := base64.RawURLEncoding.DecodeString(minted[min(1, len(minted)-1)]); err != nil || !strings.Contains(string(payload), `"sub":"`+sub+`"`) {
			t.Fatalf("Check %d over gRPC: the minted token is not %s's (%s, %v)", i+1, sub, payload, err)
		}
		want, err := e.authz.Check(context.Background(), r)
		if err != nil || !proto.Equal(got, want) || got.GetOkResponse() == nil {
			t.Fatalf("Check %d over gRPC answered\n%v\nin process\n%v (err %v)", i+1, got, want, err)
		}
	}
}
