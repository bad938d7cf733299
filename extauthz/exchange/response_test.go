package exchange

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readResponse(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "responses", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfc8693Token is the access_token of RFC 8693 Appendix A.1.1's answer.
const rfc8693Token = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjcyIn0.eyJhdWQiOiJ1cm46ZXhhbXBsZTpjb29wZXJhdGlvbi1jb250ZXh0IiwiaXNzIjoiaHR0cHM6Ly9hcy5leGFtcGxlLmNvbSIsImV4cCI6MTQ0MTkxMzYxMCwic2NvcGUiOiJzdGF0dXMgZmVlZCIsInN1YiI6InVzZXJAZXhhbXBsZS5uZXQiLCJhY3QiOnsic3ViIjoiYWRtaW5AZXhhbXBsZS5uZXQifX0.3paKl9UySKYB5ng6_cUtQ2qlO8Rc_y7Mea7IwEXTcYbNdwG9-G1EKCFe5fW3H0hwX-MSZ49Wpcb1SiAZaOQBtw"

func TestParseResponse(t *testing.T) {
	tests := []struct {
		file    string
		want    *Response
		wantErr error
	}{
		{file: "rfc8693-example.json", want: &Response{
			AccessToken: rfc8693Token, IssuedTokenType: TokenTypeJWT, TokenType: "N_A", ExpiresIn: 3600,
		}},
		{file: "keycloak-like.json", want: &Response{AccessToken: "opaque", IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: 300, Scope: "a b"}},
		{file: "null-expires.json", want: &Response{AccessToken: "x", TokenType: "Bearer"}},
		{file: "bad-no-access-token.json", wantErr: ErrMalformedResponse},
		{file: "bad-expires-string.json", wantErr: ErrMalformedResponse},
		{file: "bad-expires-negative.json", wantErr: ErrMalformedResponse},
		{file: "bad-access-token-number.json", wantErr: ErrMalformedResponse},
		{file: "bad-no-token-type.json", wantErr: ErrMalformedResponse},
		{file: "bad-string.json", wantErr: ErrMalformedResponse},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseResponse(readResponse(t, tt.file))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseResponse() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzParseResponse checks that no answer panics the parser, errors wrap
// ErrMalformedResponse, and accepted answers hold a token and a sane lifetime.
func FuzzParseResponse(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "responses"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(readResponse(f, e.Name()))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseResponse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedResponse) || r != nil {
				t.Fatalf("error %v, response %v", err, r)
			}
			return
		}
		if r.AccessToken == "" || r.TokenType == "" || r.ExpiresIn < 0 || r.ExpiresIn > maxExpiresIn {
			t.Fatalf("accepted incoherent response %+v", r)
		}
	})
}
