package authzfilter

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func okResp(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

func hvo(k, v string, appendFlag *bool, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
	if appendFlag != nil {
		o.Append = wrapperspb.Bool(*appendFlag)
	}
	return o
}

func ptr[T any](v T) *T { return &v }

func TestApply(t *testing.T) {
	const (
		addOrAppend = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		overwrite   = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ifAbsent    = corev3.HeaderValueOption_ADD_IF_ABSENT
		ifExists    = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS
	)
	req := Request{Method: "GET", Scheme: "http", Host: "app", Path: "/orders?b=2&a=1&a=3",
		Header: http.Header{"Authorization": {"Bearer outer"}, "X-Tt-Token": {"forged"}, "Accept": {"*/*"}}}
	tests := []struct {
		name       string
		resp       *authv3.CheckResponse
		callErr    error
		filter     Filter
		wantOut    Outcome
		wantStatus int
		wantHeader http.Header // full header for Allowed/Denied
		wantPath   string
		wantBody   string
		wantErr    error
	}{
		{
			name: "legacy: unset append overwrites, even with the default append_action",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("authorization", "Bearer inner", nil, addOrAppend)}}),
			wantOut:    Allowed,
			wantHeader: http.Header{"Authorization": {"Bearer inner"}, "X-Tt-Token": {"forged"}, "Accept": {"*/*"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "1.37.0: unset append with default append_action adds a second line",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("authorization", "Bearer inner", nil, addOrAppend)}}),
			filter:     Filter{AppendMode: AppendAction},
			wantOut:    Allowed,
			wantHeader: http.Header{"Authorization": {"Bearer outer", "Bearer inner"}, "X-Tt-Token": {"forged"}, "Accept": {"*/*"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "explicit OVERWRITE_IF_EXISTS_OR_ADD overwrites in both modes",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("authorization", "Bearer inner", nil, overwrite)}}),
			filter:     Filter{AppendMode: AppendAction},
			wantOut:    Allowed,
			wantHeader: http.Header{"Authorization": {"Bearer inner"}, "X-Tt-Token": {"forged"}, "Accept": {"*/*"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "deprecated append true joins with a comma; absent header is not added",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("accept", "text/plain", ptr(true), 0), hvo("x-new", "1", ptr(true), 0)}}),
			wantOut:    Allowed,
			wantHeader: http.Header{"Authorization": {"Bearer outer"}, "X-Tt-Token": {"forged"}, "Accept": {"*/*,text/plain"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "append_action ADD_IF_ABSENT and OVERWRITE_IF_EXISTS",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("accept", "no", nil, ifAbsent), hvo("x-new", "yes", nil, ifAbsent),
				hvo("x-missing", "no", nil, ifExists), hvo("x-tt-token", "over", nil, ifExists)}}),
			filter:     Filter{AppendMode: AppendAction},
			wantOut:    Allowed,
			wantHeader: http.Header{"Authorization": {"Bearer outer"}, "X-Tt-Token": {"over"}, "Accept": {"*/*"}, "X-New": {"yes"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "sets are applied before removals: a header both set and removed is gone; host and pseudo-headers stay",
			resp: okResp(&authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{hvo("x-tt-token", "minted", ptr(false), 0)},
				HeadersToRemove: []string{"x-tt-token", "authorization", "host", ":path"},
			}),
			wantOut:    Allowed,
			wantHeader: http.Header{"Accept": {"*/*"}},
			wantPath:   "/orders?b=2&a=1&a=3",
		},
		{
			name: "query parameters set (overwriting every value) and removed",
			resp: okResp(&authv3.OkHttpResponse{
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "a", Value: "9"}, {Key: "c", Value: "x"}},
				QueryParametersToRemove: []string{"b"},
			}),
			wantOut:    Allowed,
			wantHeader: req.Header,
			wantPath:   "/orders?a=9&c=x",
		},
		{
			name:       "denied without a denied_response is 403",
			resp:       &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}},
			wantOut:    Denied,
			wantStatus: 403,
			wantHeader: http.Header{},
		},
		{
			name: "denied with status, headers and body",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Unauthenticated)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
					Headers: []*corev3.HeaderValueOption{hvo("www-authenticate", `Bearer error="invalid_token"`, nil, 0)},
					Body:    "no",
				}}},
			wantOut:    Denied,
			wantStatus: 401,
			wantHeader: http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}},
			wantBody:   "no",
		},
		{
			name:       "gRPC error is status_on_error",
			callErr:    grpcstatus.Error(codes.Unavailable, "connection refused"),
			filter:     Filter{StatusOnError: 503},
			wantOut:    Failed,
			wantStatus: 503,
			wantErr:    ErrCheck,
		},
		{
			name:       "timeout is status_on_error, default 403",
			callErr:    context.DeadlineExceeded,
			wantOut:    Failed,
			wantStatus: 403,
			wantErr:    ErrCheck,
		},
		{
			name: "error_response is an error, not a denial",
			resp: &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Internal)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}}},
			filter:     Filter{StatusOnError: 503},
			wantOut:    Failed,
			wantStatus: 503,
			wantErr:    ErrErrorResponse,
		},
		{
			name:       "failure_mode_allow lets the request through unchanged",
			callErr:    grpcstatus.Error(codes.Unavailable, "down"),
			filter:     Filter{FailureModeAllow: true},
			wantOut:    FailedOpen,
			wantHeader: req.Header,
			wantPath:   req.Path,
			wantErr:    ErrCheck,
		},
		{
			name: "validate_mutations refuses a bad header value",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("authorization", "Bearer a\r\nX-Evil: 1", nil, overwrite)}}),
			filter:     Filter{ValidateMutations: true, StatusOnError: 503},
			wantOut:    Failed,
			wantStatus: 503,
			wantErr:    ErrInvalidMutation,
		},
		{
			name: "headers beyond max_request_headers_kb are refused",
			resp: okResp(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hvo("authorization", strings.Repeat("a", 2048), nil, overwrite)}}),
			filter:     Filter{MaxRequestHeadersKB: 1, StatusOnError: 503},
			wantOut:    Failed,
			wantStatus: 503,
			wantErr:    ErrHeadersTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := req
			in.Header = req.Header.Clone()
			got := Apply(tt.resp, tt.callErr, in, &tt.filter)
			if got.Outcome != tt.wantOut || got.Status != tt.wantStatus {
				t.Fatalf("outcome, status = %v, %d; want %v, %d (err %v)", got.Outcome, got.Status, tt.wantOut, tt.wantStatus, got.Err)
			}
			if !errors.Is(got.Err, tt.wantErr) || (tt.wantErr == nil && got.Err != nil) {
				t.Errorf("err = %v, want %v", got.Err, tt.wantErr)
			}
			if tt.wantHeader != nil {
				if d := cmp.Diff(tt.wantHeader, got.Header); d != "" {
					t.Errorf("header (-want +got):\n%s", d)
				}
			}
			if got.Path != tt.wantPath || got.Body != tt.wantBody {
				t.Errorf("path, body = %q, %q; want %q, %q", got.Path, got.Body, tt.wantPath, tt.wantBody)
			}
			if d := cmp.Diff(req.Header, in.Header); d != "" {
				t.Errorf("Apply modified the request's headers:\n%s", d)
			}
		})
	}
}
