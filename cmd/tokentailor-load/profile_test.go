package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProfiler(t *testing.T) {
	var asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.String()
		_, _ = w.Write([]byte("profile bytes"))
	}))
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	b := &benchRun{o: benchOptions{profile: dir, coldDuration: 10 * time.Second}}
	b.o.load.Duration = 6 * time.Second

	t.Run("off without -profile", func(t *testing.T) {
		p := (&benchRun{}).profiler(context.Background(), &child{admin: admin}, "warm-jwt", "tcp")
		p.start()
		if err := p.wait(); err != nil || asked != "" {
			t.Fatalf("wait = %v, asked %q; want nothing done", err, asked)
		}
	})
	t.Run("warm run: seconds of the run less one, file per scenario and transport", func(t *testing.T) {
		p := b.profiler(context.Background(), &child{admin: admin}, "warm-jwt", "unix")
		p.start()
		if err := p.wait(); err != nil {
			t.Fatal(err)
		}
		if asked != "/debug/pprof/profile?seconds=5" {
			t.Errorf("asked %q", asked)
		}
		got, err := os.ReadFile(filepath.Join(dir, "warm-jwt-unix.pprof"))
		if err != nil || string(got) != "profile bytes" {
			t.Fatalf("profile file = %q, %v", got, err)
		}
	})
	t.Run("cold run uses -cold-duration", func(t *testing.T) {
		p := b.profiler(context.Background(), &child{admin: admin}, "cold-rs256-eddsa", "tcp")
		p.start()
		if err := p.wait(); err != nil || asked != "/debug/pprof/profile?seconds=9" {
			t.Fatalf("wait = %v, asked %q", err, asked)
		}
	})
	t.Run("a failing pprof is an error", func(t *testing.T) {
		failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		}))
		defer failing.Close()
		p := b.profiler(context.Background(), &child{admin: strings.TrimPrefix(failing.URL, "http://")}, "warm-opaque", "tcp")
		p.start()
		if err := p.wait(); err == nil {
			t.Fatal("want an error")
		}
	})
}
