package clientauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" || r.PostFormValue("client_id") != "c" || r.PostFormValue("x") != "1" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if r.URL.Path == "/big" {
			_, _ = w.Write([]byte(strings.Repeat("a", 100)))
			return
		}
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	m, err := New(Options{Method: MethodNone, ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	form := func() url.Values { return url.Values{"x": {"1"}} }
	ans, err := Post(context.Background(), srv.Client(), m, srv.URL+"/ok", form(), "application/json", 64)
	if err != nil || ans.Status != http.StatusTeapot || ans.MediaType != "application/json" || string(ans.Body) != `{"ok":true}` {
		t.Fatalf("answer = %+v, %v", ans, err)
	}
	if _, err := Post(context.Background(), srv.Client(), m, srv.URL+"/big", form(), "application/json", 64); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize answer: %v", err)
	}
	if _, err := Post(context.Background(), srv.Client(), m, "http://127.0.0.1:1/", form(), "application/json", 64); err == nil {
		t.Fatal("unreachable endpoint: no error")
	}
}
