package secevent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
)

const (
	setIssuer   = "https://as.example.com"
	tokenIssuer = "https://as.example.com/"
	audience    = "https://tokentailor.example.com/revocations/push"
	revoked     = "opaque-access-token-1234567890"
)

var errKeyNotFound = errors.New("no such kid")

// keys is a key set with one kid.
type keys struct {
	kid string
	pub crypto.PublicKey
}

func (k keys) Key(_ context.Context, kid, _ string) (crypto.PublicKey, error) {
	if kid != k.kid {
		return nil, errKeyNotFound
	}
	return k.pub, nil
}

// revoker records revocations.
type revoker struct {
	mu    sync.Mutex
	calls []string // issuer|hash|until
	err   error
}

func (r *revoker) Revoke(_ context.Context, issuer, hash string, until time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.calls = append(r.calls, fmt.Sprintf("%s|%s|%d", issuer, hash, until.Unix()))
	return nil
}

type fixture struct {
	key, other *ecdsa.PrivateKey
	now        time.Time
	rev        *revoker
	recv       *Receiver
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{now: time.Unix(1_800_000_000, 0), rev: &revoker{}}
	var err error
	if f.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.other, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.recv, err = New(Options{
		Transmitters: []Transmitter{{
			SETIssuer: setIssuer, TokenIssuer: tokenIssuer, Audience: []string{audience},
			Algorithms: []string{"ES256", "HS256"}, Keys: keys{kid: "k1", pub: f.key.Public()},
			MaxAge: 5 * time.Minute, Leeway: 30 * time.Second, RevokeFor: time.Minute,
		}},
		Revoker: f.rev,
		Seen:    dpop.NewMemoryReplay(100, func() time.Time { return f.now }),
		Now:     func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// revokedEvent is a token-revoked event for token.
func revokedEvent(token string) map[string]any {
	return map[string]any{EventTokenRevoked: map[string]any{"subject": map[string]any{
		"subject_type": "oauth_token", "token_type": "access_token", "token_identifier_alg": "plain", "token": token,
	}}}
}

// set signs a SET; mod changes its claims and header first.
func (f *fixture) set(t testing.TB, mod func(c jwt.MapClaims, h map[string]any)) string {
	t.Helper()
	c := jwt.MapClaims{"iss": setIssuer, "aud": audience, "iat": f.now.Unix(), "jti": "set-1", "events": revokedEvent(revoked)}
	h := map[string]any{"typ": "secevent+jwt", "kid": "k1"}
	var key any = f.key
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	if mod != nil {
		mod(c, h)
	}
	if h["alg"] == "HS256" {
		method, key = jwt.SigningMethodHS256, []byte("a shared secret of at least 32 bytes!")
	}
	if h["signer"] == "other" {
		key = f.other
	}
	tok := jwt.NewWithClaims(method, c)
	for k, v := range h {
		if k != "signer" && k != "alg" {
			tok.Header[k] = v
		}
		if v == nil {
			delete(tok.Header, k)
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReceive(t *testing.T) {
	tests := []struct {
		name        string
		mod         func(c jwt.MapClaims, h map[string]any)
		wantErr     error
		wantCode    string
		wantRevoked int
	}{
		{name: "token-revoked for an access token", wantRevoked: 1},
		{name: "typ application/secevent+jwt", mod: func(_ jwt.MapClaims, h map[string]any) { h["typ"] = "application/SECEVENT+JWT" }, wantRevoked: 1},
		{name: "aud as a list holding ours", mod: func(c jwt.MapClaims, _ map[string]any) { c["aud"] = []string{"x", audience} }, wantRevoked: 1},
		{name: "token_identifier_alg token_string", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["events"] = map[string]any{EventTokenRevoked: map[string]any{"subject": map[string]any{"subject_type": "oauth_token", "token_identifier_alg": "token_string", "token": revoked}}}
		}, wantRevoked: 1},
		{name: "other events are ignored", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{}}
		}},
		{name: "a refresh token is not ours", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["events"] = map[string]any{EventTokenRevoked: map[string]any{"subject": map[string]any{"subject_type": "oauth_token", "token_type": "refresh_token", "token_identifier_alg": "plain", "token": "r"}}}
		}},
		{name: "no typ", mod: func(_ jwt.MapClaims, h map[string]any) { h["typ"] = nil }, wantErr: ErrType, wantCode: "invalid_request"},
		{name: "typ JWT (an access token)", mod: func(_ jwt.MapClaims, h map[string]any) { h["typ"] = "JWT" }, wantErr: ErrType, wantCode: "invalid_request"},
		{name: "unknown iss", mod: func(c jwt.MapClaims, _ map[string]any) { c["iss"] = "https://evil.example" }, wantErr: ErrIssuer, wantCode: "invalid_issuer"},
		{name: "another aud", mod: func(c jwt.MapClaims, _ map[string]any) { c["aud"] = "https://other.example" }, wantErr: ErrAudience, wantCode: "invalid_audience"},
		{name: "no aud", mod: func(c jwt.MapClaims, _ map[string]any) { delete(c, "aud") }, wantErr: ErrAudience, wantCode: "invalid_audience"},
		{name: "unknown kid", mod: func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "k9" }, wantErr: ErrKey, wantCode: "invalid_key"},
		{name: "HS256 even when listed", mod: func(_ jwt.MapClaims, h map[string]any) { h["alg"] = "HS256" }, wantErr: ErrKey, wantCode: "invalid_key"},
		{name: "signed by another key", mod: func(_ jwt.MapClaims, h map[string]any) { h["signer"] = "other" }, wantErr: ErrSignature, wantCode: "authentication_failed"},
		{name: "no iat", mod: func(c jwt.MapClaims, _ map[string]any) { delete(c, "iat") }, wantErr: ErrMalformed, wantCode: "invalid_request"},
		{name: "iat too old", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["iat"] = time.Unix(1_800_000_000, 0).Add(-6 * time.Minute).Unix()
		}, wantErr: ErrStale, wantCode: "invalid_request"},
		{name: "iat in the future", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["iat"] = time.Unix(1_800_000_000, 0).Add(time.Minute).Unix()
		}, wantErr: ErrStale, wantCode: "invalid_request"},
		{name: "exp passed", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["exp"] = time.Unix(1_800_000_000, 0).Add(-time.Minute).Unix()
		}, wantErr: ErrStale, wantCode: "invalid_request"},
		{name: "no jti", mod: func(c jwt.MapClaims, _ map[string]any) { delete(c, "jti") }, wantErr: ErrMalformed, wantCode: "invalid_request"},
		{name: "no events", mod: func(c jwt.MapClaims, _ map[string]any) { delete(c, "events") }, wantErr: ErrMalformed, wantCode: "invalid_request"},
		{name: "events not an object", mod: func(c jwt.MapClaims, _ map[string]any) { c["events"] = "x" }, wantErr: ErrMalformed, wantCode: "invalid_request"},
		{name: "token-revoked without subject", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["events"] = map[string]any{EventTokenRevoked: map[string]any{}}
		}, wantErr: ErrEvent, wantCode: "invalid_request"},
		{name: "token-revoked naming a hashed token", mod: func(c jwt.MapClaims, _ map[string]any) {
			c["events"] = map[string]any{EventTokenRevoked: map[string]any{"subject": map[string]any{"subject_type": "oauth_token", "token_identifier_alg": "hash_256", "token": "ab"}}}
		}, wantErr: ErrEvent, wantCode: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			res, err := f.recv.Receive(context.Background(), f.set(t, tt.mod))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Receive: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if code, status := Code(err); code != tt.wantCode || status != http.StatusBadRequest {
					t.Errorf("Code = %s %d, want %s 400", code, status, tt.wantCode)
				}
				if strings.Contains(err.Error(), revoked) {
					t.Errorf("the error holds the token: %v", err)
				}
			}
			if res.Revoked != tt.wantRevoked || len(f.rev.calls) != tt.wantRevoked {
				t.Fatalf("revoked %d (%v), want %d", res.Revoked, f.rev.calls, tt.wantRevoked)
			}
			if tt.wantRevoked == 1 {
				want := fmt.Sprintf("%s|%s|%d", tokenIssuer, extauthz.TokenHash(revoked), f.now.Add(time.Minute).Unix())
				if f.rev.calls[0] != want {
					t.Errorf("revoked %s, want %s", f.rev.calls[0], want)
				}
			}
		})
	}
}

func TestDuplicateJTIIsFlaggedAndAppliedAgain(t *testing.T) {
	f := newFixture(t)
	set := f.set(t, nil)
	for i, wantDup := range []bool{false, true} {
		res, err := f.recv.Receive(context.Background(), set)
		if err != nil || res.Duplicate != wantDup {
			t.Fatalf("delivery %d: %+v %v, want duplicate %v", i+1, res, err, wantDup)
		}
	}
	// Revocations are idempotent: applying a duplicate again costs one
	// write and can never lose one.
	if len(f.rev.calls) != 2 {
		t.Errorf("revoked %d times, want 2", len(f.rev.calls))
	}
}

// A delivery whose revocation failed (503) must not leave its jti behind:
// the transmitter's retry (RFC 8935 §2.4) is then applied, not taken for a
// duplicate.
func TestRetryAfterFailedRevocationIsApplied(t *testing.T) {
	f := newFixture(t)
	set := f.set(t, nil)
	f.rev.err = errors.New("redis down")
	if _, err := f.recv.Receive(context.Background(), set); err == nil {
		t.Fatal("first delivery: no error although the revocation failed")
	}
	f.rev.err = nil
	res, err := f.recv.Receive(context.Background(), set)
	if err != nil || res.Duplicate || res.Revoked != 1 || len(f.rev.calls) != 1 {
		t.Fatalf("retry: %+v %v, revocations %v; want applied once, not a duplicate", res, err, f.rev.calls)
	}
}

func TestServeHTTP(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		revokeErr   error
		wantStatus  int
		wantErrCode string
	}{
		{name: "a SET", method: "POST", contentType: MediaType, body: f.set(t, nil), wantStatus: 202},
		{name: "the same SET again", method: "POST", contentType: MediaType, body: f.set(t, nil), wantStatus: 202},
		{name: "content type with parameters", method: "POST", contentType: MediaType + "; charset=utf-8", body: f.set(t, func(c jwt.MapClaims, _ map[string]any) { c["jti"] = "set-2" }), wantStatus: 202},
		{name: "refused SET", method: "POST", contentType: MediaType, body: f.set(t, func(c jwt.MapClaims, _ map[string]any) { c["aud"] = "x" }), wantStatus: 400, wantErrCode: "invalid_audience"},
		{name: "not a JWS", method: "POST", contentType: MediaType, body: "hello", wantStatus: 400, wantErrCode: "invalid_request"},
		{name: "revocation not spread", method: "POST", contentType: MediaType, body: f.set(t, func(c jwt.MapClaims, _ map[string]any) { c["jti"] = "set-3" }), revokeErr: errors.New("redis down"), wantStatus: 503},
		{name: "GET", method: "GET", contentType: MediaType, wantStatus: 405},
		{name: "JSON", method: "POST", contentType: "application/json", body: "{}", wantStatus: 415},
		{name: "too large", method: "POST", contentType: MediaType, body: strings.Repeat("a", MaxSETBytes+1), wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.rev.err = tt.revokeErr
			req := httptest.NewRequest(tt.method, "/revocations/push", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			w := httptest.NewRecorder()
			f.recv.ServeHTTP(w, req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantErrCode == "" {
				return
			}
			var body struct{ Err, Description string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Err != tt.wantErrCode || body.Description == "" ||
				w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("body %s (%v), want err %s", w.Body, err, tt.wantErrCode)
			}
		})
	}
	if len(f.rev.calls) != 3 {
		t.Errorf("revoked %d times, want 3 (the SET, its duplicate again, set-2; the refused ones do nothing)", len(f.rev.calls))
	}
}

func TestNewRefusesIncompleteTransmitters(t *testing.T) {
	k := keys{kid: "k"}
	ok := Transmitter{SETIssuer: "a", TokenIssuer: "a", Audience: []string{"x"}, Keys: k, MaxAge: time.Minute, RevokeFor: time.Minute}
	tests := []struct {
		name string
		o    Options
	}{
		{name: "no revoker", o: Options{Transmitters: []Transmitter{ok}}},
		{name: "no audience", o: Options{Revoker: &revoker{}, Transmitters: []Transmitter{{SETIssuer: "a", TokenIssuer: "a", Keys: k, MaxAge: time.Minute, RevokeFor: time.Minute}}}},
		{name: "twice the same iss", o: Options{Revoker: &revoker{}, Transmitters: []Transmitter{ok, ok}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// FuzzReceive: any body is refused or accepted, never a panic, never an
// error holding more than a bounded, printable excerpt of the input.
func FuzzReceive(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.set(f, nil))
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.eyJpc3MiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := fx.recv.Receive(context.Background(), raw)
		if err != nil {
			if code, status := Code(err); code == "" && status != http.StatusServiceUnavailable {
				t.Fatalf("error %v has no code", err)
			}
		}
	})
}
