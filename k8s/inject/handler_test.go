package inject

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServeHTTP(t *testing.T) {
	good := readFixture(t, "review-annotated.json")
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantBody    string
	}{
		{name: "review", method: http.MethodPost, path: MutatePath, contentType: "application/json", body: good, wantStatus: http.StatusOK, wantBody: `"patchType":"JSONPatch"`},
		{name: "review with charset", method: http.MethodPost, path: MutatePath, contentType: "application/json; charset=utf-8", body: good, wantStatus: http.StatusOK, wantBody: `"allowed":true`},
		{name: "GET", method: http.MethodGet, path: MutatePath, wantStatus: http.StatusMethodNotAllowed, wantBody: "POST"},
		{name: "wrong content type", method: http.MethodPost, path: MutatePath, contentType: "text/plain", body: good, wantStatus: http.StatusUnsupportedMediaType, wantBody: "application/json"},
		{name: "too large", method: http.MethodPost, path: MutatePath, contentType: "application/json", body: bytes.Repeat([]byte(" "), MaxReviewBytes+1), wantStatus: http.StatusRequestEntityTooLarge, wantBody: "larger"},
		{name: "empty body", method: http.MethodPost, path: MutatePath, contentType: "application/json", wantStatus: http.StatusBadRequest, wantBody: "AdmissionReview"},
		{name: "healthz", method: http.MethodGet, path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok"},
		{name: "unknown path", method: http.MethodPost, path: "/inject", contentType: "application/json", body: good, wantStatus: http.StatusNotFound},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, h, tt.method, tt.path, tt.contentType, tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q lacks %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}
