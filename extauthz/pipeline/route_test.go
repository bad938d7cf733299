package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/upstream"
)

type stubSource struct{ exp time.Time }

func (s stubSource) Token(context.Context, *extauthz.Principal, *extauthz.Grant) (extauthz.Token, error) {
	return extauthz.Token{Value: "t", ExpiresAt: s.exp}, nil
}

type stubAuthn struct{ name string }

func (s stubAuthn) Authenticate(context.Context, extauthz.Credential) (*extauthz.Principal, error) {
	return &extauthz.Principal{Subject: s.name}, nil
}

// TestModeSources checks that each mode gets its source, that a mode the
// stages lack is an internal build error (config owns the rules), and that
// every source but exchange refuses a token that outlives the incoming one.
func TestModeSources(t *testing.T) {
	late := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	full := &stages{
		mint: stubSource{exp: late}, embedded: stubSource{exp: late}, txn: stubSource{exp: late},
		exchange: upstream.Exchange{"https://as": stubSource{exp: late}},
	}
	tests := []struct {
		name        string
		st          *stages
		mode        extauthz.Mode
		wantErr     error
		wantOutlive bool // the source refuses a token expiring after the incoming one
	}{
		{name: "forward needs nothing", st: &stages{}, mode: extauthz.ModeForward},
		{name: "mint not built", st: &stages{}, mode: extauthz.ModeMint, wantErr: ErrNotBuilt},
		{name: "embedded not built", st: &stages{}, mode: extauthz.ModeEmbedded, wantErr: ErrNotBuilt},
		{name: "exchange not built", st: &stages{}, mode: extauthz.ModeExchange, wantErr: ErrNotBuilt},
		{name: "txn_token not built", st: &stages{}, mode: extauthz.ModeTxnToken, wantErr: ErrNotBuilt},
		{name: "unknown mode", st: full, mode: "teleport", wantErr: ErrNotBuilt},
		{name: "mint", st: full, mode: extauthz.ModeMint, wantOutlive: true},
		{name: "embedded", st: full, mode: extauthz.ModeEmbedded, wantOutlive: true},
		{name: "txn_token", st: full, mode: extauthz.ModeTxnToken, wantOutlive: true},
		{name: "exchange is exempt", st: full, mode: extauthz.ModeExchange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := tt.st.source(tt.mode)
			if !errors.Is(err, tt.wantErr) || (src == nil) != (tt.wantErr != nil) {
				t.Fatalf("source(%s) = %v, %v; want error %v", tt.mode, src, err, tt.wantErr)
			}
			if src == nil || tt.mode == extauthz.ModeForward {
				return
			}
			p := &extauthz.Principal{Issuer: "https://as", ExpiresAt: late.Add(-time.Hour)}
			_, err = src.Token(context.Background(), p, &extauthz.Grant{Mode: tt.mode})
			if got := errors.Is(err, extauthz.ErrInternal); got != tt.wantOutlive {
				t.Errorf("outliving token refused = %v (%v), want %v", got, err, tt.wantOutlive)
			}
		})
	}
}

func TestRouteAuthenticatesByCredentialKind(t *testing.T) {
	tests := []struct {
		name    string
		rt      route
		kind    extauthz.CredentialKind
		want    string
		wantErr error
	}{
		{name: "jwt", rt: route{jwt: stubAuthn{"jwt"}, opaque: stubAuthn{"opaque"}}, kind: extauthz.KindJWT, want: "jwt"},
		{name: "opaque", rt: route{jwt: stubAuthn{"jwt"}, opaque: stubAuthn{"opaque"}}, kind: extauthz.KindOpaque, want: "opaque"},
		{name: "no credential", rt: route{jwt: stubAuthn{"jwt"}}, kind: extauthz.KindNone, wantErr: extauthz.ErrNoCredential},
		{name: "no introspection", rt: route{jwt: stubAuthn{"jwt"}}, kind: extauthz.KindOpaque, wantErr: extauthz.ErrInvalidToken},
		{name: "no JWT issuer", rt: route{opaque: stubAuthn{"opaque"}}, kind: extauthz.KindJWT, wantErr: extauthz.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.rt.authenticate(context.Background(), extauthz.Credential{Raw: "x", Kind: tt.kind})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if p.Subject != tt.want {
				t.Errorf("authenticated by %q, want %q", p.Subject, tt.want)
			}
		})
	}
}
