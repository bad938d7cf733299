package authzfilter

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzCheckRoundTrip feeds client-controlled request parts (path with query,
// a header) and an authorization answer's mutations through
// BuildCheckRequest and Apply: no panic, the CheckRequest always carries the
// pseudo-headers and marshals, a removed header never survives, and Apply
// never allows on a non-OK answer.
func FuzzCheckRoundTrip(f *testing.F) {
	f.Add("/orders?a=1&a=2&b", "X-Tt", "v1", "x-tt", "minted", "a", "9", true, uint8(0))
	f.Add("/?=&&=x", "Accept", "a\xff", "", "", "", "", false, uint8(7))
	f.Add("/docs/../x?q=%zz", "authorization", "Bearer x", "authorization", "Bearer y", "q", "", true, uint8(16))
	f.Fuzz(func(t *testing.T, path, hname, hvalue, setName, setValue, qkey, qvalue string, remove bool, code uint8) {
		req := Request{Method: "GET", Scheme: "http", Host: "h", Path: path, Header: http.Header{hname: {hvalue, hvalue}}}
		cr := BuildCheckRequest(req, CheckOptions{ContextExtensions: map[string]string{"route": "r"}})
		h := cr.GetAttributes().GetRequest().GetHttp().GetHeaders()
		if h[":method"] != "GET" || h[":authority"] != "h" {
			t.Fatalf("pseudo-headers missing: %v", h)
		}
		if _, err := proto.Marshal(cr); err != nil {
			t.Fatalf("CheckRequest does not marshal: %v", err)
		}
		ok := &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: setName, Value: setValue}}},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: qkey, Value: qvalue}},
		}
		if remove {
			ok.HeadersToRemove = []string{hname}
		}
		resp := okResp(ok)
		resp.Status.Code = int32(code % 17)
		for _, mode := range []AppendMode{AppendLegacy, AppendAction} {
			res := Apply(resp, nil, req, &Filter{AppendMode: mode, ValidateMutations: true, StatusOnError: 503})
			if code%17 != 0 && (res.Outcome == Allowed || res.Outcome == FailedOpen) {
				t.Fatalf("allowed on status %d", code%17)
			}
			if res.Outcome != Allowed {
				continue
			}
			if remove && !strings.HasPrefix(hname, ":") && !strings.EqualFold(hname, "host") && validHeader(hname, "") {
				if len(res.Header.Values(hname)) > 0 {
					t.Fatalf("removed header %q survived: %v", hname, res.Header)
				}
			}
			if p, _, _ := strings.Cut(res.Path, "?"); !strings.HasPrefix(path, p) {
				t.Fatalf("query mutation changed the path: %q → %q", path, res.Path)
			}
		}
	})
}
