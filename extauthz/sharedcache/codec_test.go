package sharedcache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokentailor/tokentailor/extauthz"
)

func TestIntrospectionEntryRoundTrip(t *testing.T) {
	exp := time.UnixMilli(1_800_000_000_000)
	for _, tc := range []struct {
		name        string
		in          IntrospectionEntry
		wantRefusal error
	}{
		{name: "active, every field", in: IntrospectionEntry{
			Principal: &extauthz.Principal{
				Issuer: issuer, Subject: "alice", ClientID: "shop", Audience: []string{"orders"},
				Scopes: []string{"orders:read", "orders:write"}, Claims: map[string]any{"tenant": "t1", "level": 3.0},
				ExpiresAt: exp, IssuedAt: exp.Add(-time.Hour), Unbound: true,
			},
			NotBefore: exp.Add(-time.Minute),
		}},
		{name: "active, expiry unknown", in: IntrospectionEntry{
			Principal: &extauthz.Principal{Issuer: issuer, Subject: "bob", ExpiresAt: exp, ExpiryUnknown: true, Unbound: true},
		}},
		// Unbound is not sent: it is judged again from the claims read back.
		{name: "active, bound to a certificate", in: IntrospectionEntry{
			Principal: &extauthz.Principal{Issuer: issuer, Subject: "carol", ExpiresAt: exp,
				Claims: map[string]any{"cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}},
		}},
		{name: "inactive", in: IntrospectionEntry{Refusal: extauthz.ErrTokenInactive}, wantRefusal: extauthz.ErrTokenInactive},
		{name: "wrong audience, wrapped", in: IntrospectionEntry{Refusal: errorsJoin("aud", extauthz.ErrWrongAudience)}, wantRefusal: extauthz.ErrWrongAudience},
		{name: "expired", in: IntrospectionEntry{Refusal: extauthz.ErrTokenExpired}, wantRefusal: extauthz.ErrTokenExpired},
		{name: "invalid token", in: IntrospectionEntry{Refusal: extauthz.ErrInvalidToken}, wantRefusal: extauthz.ErrInvalidToken},
		{name: "unknown issuer", in: IntrospectionEntry{Refusal: extauthz.ErrUnknownIssuer}, wantRefusal: extauthz.ErrUnknownIssuer},
		{name: "not yet valid", in: IntrospectionEntry{Refusal: extauthz.ErrTokenNotYetValid}, wantRefusal: extauthz.ErrTokenNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeIntrospection(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeIntrospection(b)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantRefusal != nil {
				if !errors.Is(got.Refusal, tc.wantRefusal) || got.Principal != nil {
					t.Errorf("refusal %v, want %v", got.Refusal, tc.wantRefusal)
				}
				return
			}
			if diff := cmp.Diff(tc.in, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func errorsJoin(msg string, err error) error { return errors.Join(errors.New(msg), err) }

func TestEncodeNeverWritesTheCredential(t *testing.T) {
	p := &extauthz.Principal{Issuer: issuer, Subject: "alice", ExpiresAt: time.Now().Add(time.Hour),
		Credential: extauthz.Credential{Raw: "the-raw-token", Kind: extauthz.KindOpaque}}
	b, err := EncodeIntrospection(IntrospectionEntry{Principal: p})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "the-raw-token") {
		t.Errorf("encoded entry holds the token: %s", b)
	}
}

func TestEncodeRefusesWhatCannotBeShared(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   IntrospectionEntry
	}{
		{name: "unavailability is not an answer", in: IntrospectionEntry{Refusal: extauthz.ErrIssuerUnavailable}},
		{name: "no principal", in: IntrospectionEntry{}},
		{name: "no expiry", in: IntrospectionEntry{Principal: &extauthz.Principal{Subject: "x"}}},
		{name: "claim that is not JSON", in: IntrospectionEntry{Principal: &extauthz.Principal{
			ExpiresAt: time.Now(), Claims: map[string]any{"f": func() {}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeIntrospection(tc.in); !errors.Is(err, ErrNotShareable) {
				t.Errorf("err = %v, want ErrNotShareable", err)
			}
		})
	}
	if _, err := EncodeToken(extauthz.Token{Value: "t"}); !errors.Is(err, ErrNotShareable) {
		t.Errorf("token without expiry: err = %v", err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	in := extauthz.Token{Value: "eyJ.exchanged.token", ExpiresAt: time.UnixMilli(1_800_000_000_123)}
	b, err := EncodeToken(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeToken(b)
	if err != nil || !got.ExpiresAt.Equal(in.ExpiresAt) || got.Value != in.Value {
		t.Errorf("round trip: %+v %v", got, err)
	}
}

// TestDecodersRefuseMalformedValues reads testdata/malformed/*: each file is
// a value no encoder writes.
func TestDecodersRefuseMalformedValues(t *testing.T) {
	files, err := filepath.Glob("testdata/malformed/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeIntrospection(b); !errors.Is(err, ErrMalformedValue) {
				t.Errorf("DecodeIntrospection: err = %v, want ErrMalformedValue", err)
			}
			if _, err := DecodeToken(b); !errors.Is(err, ErrMalformedValue) {
				t.Errorf("DecodeToken: err = %v, want ErrMalformedValue", err)
			}
		})
	}
}

func FuzzDecodeIntrospection(f *testing.F) {
	seed, _ := EncodeIntrospection(IntrospectionEntry{Principal: &extauthz.Principal{
		Issuer: issuer, Subject: "s", Scopes: []string{"a"}, Claims: map[string]any{"k": "v"}, ExpiresAt: time.UnixMilli(1e12)}})
	refusal, _ := EncodeIntrospection(IntrospectionEntry{Refusal: extauthz.ErrTokenInactive})
	for _, s := range [][]byte{seed, refusal, []byte(`{"v":1}`), []byte(`{"v":2,"r":"inactive"}`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeIntrospection(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("error not ErrMalformedValue: %v", err)
			}
			return
		}
		if (e.Principal == nil) == (e.Refusal == nil) {
			t.Fatalf("decoded entry is neither a principal nor a refusal: %+v", e)
		}
		if e.Principal != nil && e.Principal.ExpiresAt.IsZero() {
			t.Fatal("principal without expiry")
		}
	})
}

func FuzzDecodeToken(f *testing.F) {
	seed, _ := EncodeToken(extauthz.Token{Value: "a.b.c", ExpiresAt: time.UnixMilli(1e12)})
	for _, s := range [][]byte{seed, []byte(`{"v":1,"t":"","exp":1}`), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := DecodeToken(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("error not ErrMalformedValue: %v", err)
			}
			return
		}
		if tok.Value == "" || tok.ExpiresAt.IsZero() {
			t.Fatalf("decoded token without value or expiry: %+v", tok)
		}
	})
}

// FuzzOpen: whatever Redis hands back, opening it never panics and
// succeeds only for what seal made under the same additional data.
func FuzzOpen(f *testing.F) {
	s, err := newSealer(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := s.seal([]byte("value"), "key")
	f.Add(good, "key")
	f.Add(good, "other-key")
	f.Add([]byte{1}, "key")
	f.Fuzz(func(t *testing.T, msg []byte, aad string) {
		plain, err := s.open(msg, aad)
		if err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("error not ErrMalformedValue: %v", err)
			}
			return
		}
		if aad != "key" || string(plain) != "value" {
			t.Fatalf("opened %q under %q", plain, aad)
		}
	})
}
