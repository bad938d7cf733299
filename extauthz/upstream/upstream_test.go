package upstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// fixed is a source that returns tok, or err.
type fixed struct {
	tok extauthz.Token
	err error
}

func (f fixed) Token(context.Context, *extauthz.Principal, *extauthz.Grant) (extauthz.Token, error) {
	return f.tok, f.err
}

func TestNotOutlivingRefusesALongerLivedToken(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	boom := errors.New("boom")
	tests := []struct {
		name       string
		incoming   time.Time
		src        fixed
		wantErr    error
		wantExpiry time.Time
	}{
		{name: "earlier", incoming: exp, src: fixed{tok: extauthz.Token{Value: "t", ExpiresAt: exp.Add(-time.Minute)}}, wantExpiry: exp.Add(-time.Minute)},
		{name: "same instant", incoming: exp, src: fixed{tok: extauthz.Token{Value: "t", ExpiresAt: exp}}, wantExpiry: exp},
		{name: "later", incoming: exp, src: fixed{tok: extauthz.Token{Value: "t", ExpiresAt: exp.Add(time.Second)}}, wantErr: extauthz.ErrInternal},
		{name: "incoming without expiry", src: fixed{tok: extauthz.Token{Value: "t", ExpiresAt: exp}}, wantExpiry: exp},
		{name: "token without expiry", incoming: exp, src: fixed{tok: extauthz.Token{Value: "t"}}},
		{name: "source error passes", incoming: exp, src: fixed{err: boom}, wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &extauthz.Principal{ExpiresAt: tt.incoming}
			tok, err := NotOutliving(tt.src).Token(context.Background(), p, &extauthz.Grant{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err == nil && !tok.ExpiresAt.Equal(tt.wantExpiry) {
				t.Errorf("expiry %v, want %v", tok.ExpiresAt, tt.wantExpiry)
			}
		})
	}
}

func TestExchangeGoesToTheNamedIssuerElseTheTokensIssuer(t *testing.T) {
	r := Exchange{
		"https://a": fixed{tok: extauthz.Token{Value: "from-a"}},
		"https://b": fixed{tok: extauthz.Token{Value: "from-b"}},
	}
	tests := []struct {
		name    string
		issuer  string
		spec    *extauthz.ExchangeSpec
		want    string
		wantErr error
	}{
		{name: "token's issuer", issuer: "https://a", want: "from-a"},
		{name: "route names another", issuer: "https://a", spec: &extauthz.ExchangeSpec{Issuer: "https://b"}, want: "from-b"},
		{name: "route names none", issuer: "https://b", spec: &extauthz.ExchangeSpec{}, want: "from-b"},
		{name: "issuer without token endpoint", issuer: "https://c", wantErr: extauthz.ErrExchangeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := r.Token(context.Background(), &extauthz.Principal{Issuer: tt.issuer}, &extauthz.Grant{Exchange: tt.spec})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tok.Value != tt.want {
				t.Errorf("token %q, want %q", tok.Value, tt.want)
			}
		})
	}
}

func TestEmbeddedForFindsTheAudiencesToken(t *testing.T) {
	// want is the token found for "orders"; "" means none is (ok false).
	tests := []struct {
		name  string
		claim any
		want  string
	}{
		{name: "map", claim: map[string]any{"orders": "jwt-o", "billing": "jwt-b"}, want: "jwt-o"},
		{name: "list", claim: []any{map[string]any{"aud": "billing", "token": "jwt-b"}, map[string]any{"aud": "orders", "token": "jwt-o"}}, want: "jwt-o"},
		{name: "absent", claim: map[string]any{"billing": "jwt-b"}},
		{name: "empty token", claim: map[string]any{"orders": ""}},
		{name: "not a string", claim: map[string]any{"orders": 3}},
		{name: "list entry of wrong shape", claim: []any{"orders", map[string]any{"aud": "orders"}}},
		{name: "no claim", claim: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := embeddedFor(tt.claim, "orders")
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("embeddedFor() = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}
