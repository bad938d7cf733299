package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
	"github.com/tokentailor/tokentailor/extauthz/secevent"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// TestSharedPushedRevocationReachesEveryReplica: the authorization server
// revokes an opaque token and pushes a token-revoked SET (RFC 8417, RFC
// 8935) to one replica's admin listener; both replicas, which had the
// token's active answer cached, refuse it within a second. Real redis-server.
func TestSharedPushedRevocationReachesEveryReplica(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	t.Setenv("TT_SHARED_KEY", sharedtest.Secret)
	const pushAud = "https://tokentailor.test/revocations/push"
	cfg := strings.Replace(modesConfig, "    token_endpoint: {{ISSUER}}/token\n",
		"    token_endpoint: {{ISSUER}}/token\n    revocation_push: {audience: ["+pushAud+"]}\n", 1) +
		"shared_cache:\n  addresses: [" + srv.Addr() + "]\n  key_secret: {env: TT_SHARED_KEY}\n"
	var intro *authztest.Introspection
	h := newHarnessWith(t, cfg, func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	})
	const token = "opaque-token-to-revoke-1"
	intro.Register(token, map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com",
		"exp": time.Now().Add(time.Hour).Unix()})
	sharedtest.WaitConnected(t, h.srv.shared, "replica A's shared cache")
	replicaB := sharedReplica(t, h.srv.Authz().Pipeline().Config, sharedtest.Connect(t, srv.Addr(), 0))
	ctx := context.Background()
	checkA := func() int { return httpStatus(h.check("GET", "/orders/1", bearer(token))) }
	checkB := func() int {
		resp, err := replicaB.Check(ctx, checkRequest("GET", "/orders/1", bearer(token)))
		if err != nil {
			t.Fatal(err)
		}
		return httpStatus(resp)
	}
	if a, b := checkA(), checkB(); a != 200 || b != 200 {
		t.Fatalf("before the revocation: A %d, B %d, want 200 both", a, b)
	}
	if n := intro.Calls(); n != 1 {
		t.Fatalf("%d introspection calls, want 1 (B took A's shared answer)", n)
	}

	push := func(claims jwt.MapClaims) (int, string) {
		set := h.is.Sign(t, claims, authztest.WithTyp("secevent+jwt"))
		res, err := http.Post("http://"+h.srv.AdminAddr().String()+"/revocations/push", secevent.MediaType, strings.NewReader(set))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Err string }
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Err
	}
	revokedEvent := map[string]any{secevent.EventTokenRevoked: map[string]any{"subject": map[string]any{
		"subject_type": "oauth_token", "token_type": "access_token", "token_identifier_alg": "plain", "token": token}}}

	// A SET for another receiver changes nothing.
	if status, code := push(jwt.MapClaims{"iss": h.is.URL(), "aud": "https://other.test", "iat": time.Now().Unix(), "jti": "set-0", "events": revokedEvent}); status != 400 || code != "invalid_audience" {
		t.Fatalf("SET for another audience: %d %q, want 400 invalid_audience", status, code)
	}
	if a, b := checkA(), checkB(); a != 200 || b != 200 {
		t.Fatalf("after a refused SET: A %d, B %d, want 200 both", a, b)
	}

	intro.Revoke(token)
	if status, code := push(jwt.MapClaims{"iss": h.is.URL(), "aud": pushAud, "iat": time.Now().Unix(), "jti": "set-1", "events": revokedEvent}); status != 202 {
		t.Fatalf("push: %d %q, want 202", status, code)
	}
	start := time.Now()
	for checkA() != 401 || checkB() != 401 {
		if time.Since(start) > time.Second {
			t.Fatalf("the pushed revocation did not reach both replicas within 1s (A %d, B %d)", checkA(), checkB())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("both replicas refuse the token %v after the push; %d introspection calls", time.Since(start).Round(time.Millisecond), intro.Calls())
	if status, _ := push(jwt.MapClaims{"iss": h.is.URL(), "aud": pushAud, "iat": time.Now().Unix(), "jti": "set-1", "events": revokedEvent}); status != 202 {
		t.Fatalf("a duplicate SET: %d, want 202", status)
	}
}
