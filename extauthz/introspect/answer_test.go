package introspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func readAnswer(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "answers", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		file        string
		scopeClaims []string
		want        *Answer // Claims ignored
		wantErr     error
	}{
		{
			file: "rfc7662-example.json", scopeClaims: []string{"scope"},
			want: &Answer{
				Active: true, ClientID: "l238j323ds-23ij4", Subject: "Z5O3upPC88QrAjx00dis",
				Scopes: []string{"read", "write", "dolphin"}, Issuer: "https://server.example.com/",
				Audience:  []string{"https://protected.example.net/resource"},
				ExpiresAt: time.Unix(1419356238, 0), IssuedAt: time.Unix(1419350238, 0),
			},
		},
		{
			file: "hydra.json", scopeClaims: []string{"scope"},
			want: &Answer{
				Active: true, ClientID: "my-client", Subject: "foo@bar.com", Scopes: []string{"offline", "openid"},
				Issuer: "http://127.0.0.1:4444/", Audience: []string{"api-a", "api-b"}, TokenType: "Bearer", TokenUse: "access_token",
				ExpiresAt: time.Unix(1700003600, 0), IssuedAt: time.Unix(1700000000, 0), NotBefore: time.Unix(1700000000, 0),
			},
		},
		{file: "inactive.json", want: &Answer{}},
		{file: "inactive-with-junk.json", scopeClaims: []string{"scope"}, want: &Answer{}},
		{
			file: "fractional-exp-array-scope.json", scopeClaims: []string{"scope", "scp"},
			want: &Answer{Active: true, Scopes: []string{"a", "b", "c"}, ExpiresAt: time.Unix(1700000000, 5e8)},
		},
		// RFC 7662 §2.2: only the JSON true is active; the rest is read no further.
		{file: "inactive-active-string.json", want: &Answer{}},
		{file: "inactive-active-string-junk.json", scopeClaims: []string{"scope"}, want: &Answer{}},
		{file: "inactive-active-number.json", scopeClaims: []string{"scope"}, want: &Answer{}},
		{file: "inactive-active-null.json", scopeClaims: []string{"scope"}, want: &Answer{}},
		{file: "inactive-no-active.json", scopeClaims: []string{"scope"}, want: &Answer{}},
		{file: "bad-negative-exp.json", wantErr: ErrMalformedAnswer},
		{file: "bad-huge-exp.json", wantErr: ErrMalformedAnswer},
		{file: "bad-aud-numbers.json", wantErr: ErrMalformedAnswer},
		{file: "bad-sub-object.json", wantErr: ErrMalformedAnswer},
		{file: "bad-array.json", wantErr: ErrMalformedAnswer},
		{file: "bad-null.json", wantErr: ErrMalformedAnswer},
		{file: "bad-trailing.json", wantErr: ErrMalformedAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseAnswer(readAnswer(t, tt.file), tt.scopeClaims)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseAnswer() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Answer{}, "Claims"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseAnswerKeepsExtraMembers(t *testing.T) {
	a, err := ParseAnswer(readAnswer(t, "rfc7662-example.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Claims["extension_field"] != "twenty-seven" || a.Claims["username"] != "jdoe" {
		t.Errorf("extra members lost: %v", a.Claims)
	}
}

func TestParseAnswerErrorsDoNotQuoteInput(t *testing.T) {
	const secretish = "SECRET-TOKEN-VALUE"
	for _, body := range []string{`{"active":true,` + secretish, secretish, `{"active":true,"sub":["` + secretish + `"]}`} {
		_, err := ParseAnswer([]byte(body), nil)
		if err == nil || strings.Contains(err.Error(), secretish) {
			t.Errorf("error %v quotes the answer", err)
		}
	}
}

// FuzzParseAnswer checks that no answer panics the parser, that every error
// wraps ErrMalformedAnswer, and that an accepted active answer is coherent.
func FuzzParseAnswer(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "answers"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(readAnswer(f, e.Name()))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAnswer(body, []string{"scope", "scp"})
		if err != nil {
			if !errors.Is(err, ErrMalformedAnswer) {
				t.Fatalf("error %v does not wrap ErrMalformedAnswer", err)
			}
			if a != nil {
				t.Fatal("answer returned with an error")
			}
			return
		}
		if a.Claims == nil {
			t.Fatal("accepted answer without claims")
		}
		if a.Active != (a.Claims["active"] == true) {
			t.Fatalf("Active = %v for \"active\": %v", a.Active, a.Claims["active"])
		}
		if !a.Active {
			return
		}
		for _, s := range a.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\n") {
				t.Fatalf("scope %q not split", s)
			}
		}
		for _, tm := range []time.Time{a.ExpiresAt, a.IssuedAt, a.NotBefore} {
			if !tm.IsZero() && tm.Before(time.Unix(0, 0)) {
				t.Fatalf("time %v before the epoch", tm)
			}
		}
	})
}
