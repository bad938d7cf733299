package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// introspection.token_shape and introspection.rate_limit reach the
// introspector through config and Build: a token of another shape is 401
// without a call, a call beyond the bucket is 503 without a call and
// counted, and cached answers keep being served.
func TestFloodSettingsThroughTheServer(t *testing.T) {
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	cfg := strings.Replace(modesConfig, "      max_cache_ttl: 1m\n",
		"      max_cache_ttl: 1m\n      rate_limit: {per_second: 0.001, burst: 2}\n      token_shape: {prefix: opq_, alphabet: alnum, min_length: 8}\n", 1)
	var intro *authztest.Introspection
	h := newHarnessWith(t, cfg, func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
		is.Exchange(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	})
	intro.Register("opq_good1", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "aud": "api.example.com",
		"exp": time.Now().Add(time.Hour).Unix()})
	steps := []struct {
		name       string
		token      string
		wantStatus int
		wantCalls  int
	}{
		{name: "another shape", token: "garbage-token-42", wantStatus: 401, wantCalls: 0},
		{name: "too short", token: "opq_a", wantStatus: 401, wantCalls: 0},
		{name: "the issuer's token", token: "opq_good1", wantStatus: 200, wantCalls: 1},
		{name: "unknown token of the shape", token: "opq_unknown1", wantStatus: 401, wantCalls: 2},
		{name: "bucket empty", token: "opq_unknown2", wantStatus: 503, wantCalls: 2},
		{name: "cached answer while limited", token: "opq_good1", wantStatus: 200, wantCalls: 2},
		{name: "cached refusal while limited", token: "opq_unknown1", wantStatus: 401, wantCalls: 2},
	}
	for _, st := range steps {
		if got := httpStatus(h.check("GET", "/orders/1", bearer(st.token))); got != st.wantStatus {
			t.Fatalf("%s: status %d, want %d", st.name, got, st.wantStatus)
		}
		if got := intro.Calls(); got != st.wantCalls {
			t.Fatalf("%s: %d introspection calls, want %d", st.name, got, st.wantCalls)
		}
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := `tokentailor_issuer_requests_limited_total{endpoint="introspection",issuer="` + h.is.URL() + `"} 1`; !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s", want)
	}
}
