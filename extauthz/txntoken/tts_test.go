package txntoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
	"github.com/tokentailor/tokentailor/extauthz/exchange"
)

// tts is a Transaction Token Service double: it checks the request shape
// of draft §9.1 and answers what the test says.
type tts struct {
	t      *testing.T
	minter *Minter
	answer func(form url.Values) (status int, body any)
	form   url.Values
}

func (s *tts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.t.Error(err)
	}
	if id, secret, ok := r.BasicAuth(); !ok || id != "tokentailor" || secret != "s3cret" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.form = r.PostForm
	status, body := s.answer(r.PostForm)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// issue answers as a TTS does (draft §9.4) with a Txn-Token for the
// requested scope, its exp shifted by expShift.
func (s *tts) issue(issuedType string, expShift time.Duration, scope string) func(url.Values) (int, any) {
	return func(f url.Values) (int, any) {
		if scope == "" {
			scope = f.Get("scope")
		}
		var rctx map[string]any
		_ = json.Unmarshal([]byte(f.Get("request_context")), &rctx)
		m := *s.minter
		m.opts.TTL = time.Minute + expShift
		tok, err := m.Mint(context.Background(), Input{Subject: "alice", Scopes: []string{scope}, ClientIP: fmt.Sprint(rctx["req_ip"])})
		if err != nil {
			s.t.Fatal(err)
		}
		return http.StatusOK, map[string]any{"token_type": "N_A", "issued_token_type": issuedType, "access_token": tok.Value}
	}
}

func TestServiceObtain(t *testing.T) {
	ttsKey := newKey(t, "ES256")
	double := &tts{t: t, minter: newMinter(t, ttsKey, func(o *MinterOptions) { o.Workload = "tts.shop.example" })}
	srv := httptest.NewServer(double)
	defer srv.Close()
	auth, err := clientauth.New(clientauth.Options{ClientID: "tokentailor", Method: clientauth.MethodClientSecretBasic, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := exchange.New(exchange.Options{
		Issuer: "tts", TokenEndpoint: srv.URL + "/token", Auth: auth, Now: fixedNow,
		Client: srv.Client(), Timeout: 5 * time.Second, CacheEntries: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(trustDomain, ex, newVerifier(t, KeysOf(ttsKey)))
	if err != nil {
		t.Fatal(err)
	}
	req := Request{
		SubjectToken:   "opaque-access-token",
		Scopes:         []string{"orders:read"},
		RequestContext: map[string]any{"req_ip": "203.0.113.7", "authn": "bearer"},
		RequestDetails: map[string]any{"method": "GET", "path": "/orders/42"},
	}
	tests := []struct {
		name     string
		answer   func(url.Values) (int, any)
		notAfter time.Time
		wantErr  error
	}{
		{name: "issued and verified", answer: double.issue(TokenType, 0, "")},
		{name: "another token type", answer: double.issue(exchange.TokenTypeAccessToken, 0, ""), wantErr: extauthz.ErrExchangeRefused},
		{name: "wider scope than asked", answer: double.issue(TokenType, 0, "admin"), wantErr: extauthz.ErrExchangeRefused},
		{name: "outlives the incoming token", answer: double.issue(TokenType, 0, ""), notAfter: testNow.Add(30 * time.Second), wantErr: ErrServiceOutlives},
		{name: "signed by a key the TTS JWKS lacks", answer: func(f url.Values) (int, any) {
			m := newMinter(t, newKey(t, "ES256"), nil)
			tok, _ := m.Mint(context.Background(), Input{Subject: "alice", Scopes: []string{"orders:read"}})
			return http.StatusOK, map[string]any{"token_type": "N_A", "issued_token_type": TokenType, "access_token": tok.Value}
		}, wantErr: extauthz.ErrExchangeRefused},
		{name: "OAuth error", answer: func(url.Values) (int, any) {
			return http.StatusBadRequest, map[string]any{"error": "invalid_scope"}
		}, wantErr: extauthz.ErrExchangeRefused},
		{name: "TTS failing", answer: func(url.Values) (int, any) { return http.StatusBadGateway, map[string]any{} }, wantErr: extauthz.ErrIssuerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			double.answer = tt.answer
			tok, err := svc.Obtain(context.Background(), req, tt.notAfter)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Obtain: %v, want %v", err, tt.wantErr)
			}
			f := double.form
			for name, want := range map[string]string{
				"grant_type": exchange.GrantType, "requested_token_type": TokenType, "audience": trustDomain,
				"scope": "orders:read", "subject_token": "opaque-access-token", "subject_token_type": exchange.TokenTypeAccessToken,
				"request_context": `{"authn":"bearer","req_ip":"203.0.113.7"}`, "request_details": `{"method":"GET","path":"/orders/42"}`,
			} {
				if got := f.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if err == nil && (tok.Subject != "alice" || tok.RequestContext["req_ip"] != "203.0.113.7") {
				t.Errorf("token %+v", tok)
			}
		})
	}
}
