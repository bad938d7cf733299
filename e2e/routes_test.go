package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// TestRouteSelectionThroughGRPC sends CheckRequests that name no route (an
// Envoy without context_extensions) to the tokentailor binary running the
// reference sidecar config, and checks that routes are chosen as the
// upstream will serve the request (issue 11): ;params cut, the method
// upper-cased, ambiguous paths refused with 400 before any route is tried.
func TestRouteSelectionThroughGRPC(t *testing.T) {
	is := authztest.New(t)
	is.Introspection(t, authztest.WithClientSecret("tokentailor", clientSecret))
	dir := shortTempDir(t)
	cfg, tt := exampleConfig(t, "tokentailor-sidecar.yaml", is, dir, false)
	startTokentailor(t, tt, dir, cfg)
	conn, err := grpc.NewClient(tt.target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	exp := time.Now().Add(10 * time.Minute).Unix()
	readOnly := is.Sign(t, jwt.MapClaims{"sub": "alice", "aud": "api.example.com", "scope": "orders:read", "exp": exp})
	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		wantStatus int // 0: allowed
		wantChall  string
	}{
		{name: "params on the prefix segment select /orders", method: "GET", path: "/orders;jsessionid=1/42?x=1", token: readOnly},
		{name: "empty params select /orders", method: "GET", path: "/orders;/42", token: readOnly},
		{name: "lower-case method selects the DELETE route", method: "delete", path: "/orders/42", token: readOnly,
			wantStatus: http.StatusForbidden, wantChall: `scope="orders:write"`},
		{name: "params hiding a dot segment", method: "GET", path: "/docs/..;/orders/42", wantStatus: http.StatusBadRequest},
		{name: "encoded semicolon", method: "GET", path: "/docs%3B/../orders", wantStatus: http.StatusBadRequest},
		{name: "trailing dot in a segment", method: "GET", path: "/orders./42", token: readOnly, wantStatus: http.StatusBadRequest},
		{name: "encoded slash", method: "GET", path: "/docs%2F..%2Forders", wantStatus: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{":authority": "app.test", ":path": tc.path, ":method": tc.method}
			if tc.token != "" {
				headers["authorization"] = "Bearer " + tc.token
			}
			resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: tc.method, Host: "app.test", Path: tc.path, Scheme: "http", Headers: headers,
				}},
			}})
			if err != nil {
				t.Fatalf("Check: %v (every outcome must be a CheckResponse)", err)
			}
			if tc.wantStatus == 0 {
				ok := resp.GetOkResponse()
				if resp.GetStatus().GetCode() != 0 || ok == nil {
					t.Fatalf("denied: %v", resp)
				}
				if !hasHeader(ok, "authorization") {
					t.Errorf("allowed without a minted token: %v", ok)
				}
				return
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != tc.wantStatus {
				t.Fatalf("response %v, want a %d denial", resp, tc.wantStatus)
			}
			var chall string
			for _, h := range d.GetHeaders() {
				if h.GetHeader().GetKey() == "www-authenticate" {
					chall = h.GetHeader().GetValue()
				}
			}
			if !strings.Contains(chall, tc.wantChall) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", chall, tc.wantChall)
			}
		})
	}
}

func hasHeader(ok *authv3.OkHttpResponse, name string) bool {
	for _, h := range ok.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), name) {
			return true
		}
	}
	return false
}
