package server

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
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

// FuzzAnswerEncoding: for any token, prefix and header names, the answer
// response.Builder makes is one protobuf-go can marshal (valid UTF-8
// everywhere), and the server's codec writes the same bytes.
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
// 600-byte minted token) against gRPC's protobuf codec.
func BenchmarkAnswerEncoding(b *testing.B) {
	resp := codecAnswers()["allow mint"]
	for _, c := range []struct {
		name  string
		codec interface {
			Marshal(any) (mem.BufferSlice, error)
		}
	}{{"fast", newFastCodec()}, {"grpc-proto", newFastCodec().proto}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
