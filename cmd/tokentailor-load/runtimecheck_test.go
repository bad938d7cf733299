package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tokentailor/tokentailor/extauthz/server"
)

func TestParseRuntimeMetrics(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string
		wantErr string
	}{
		{name: "tokentailor defaults", text: "# HELP go_gc_gogc_percent x\ngo_gc_gogc_percent 400\ngo_gc_gomemlimit_bytes 5.9e+07\ngo_sched_gomaxprocs_threads 1\n",
			want: "GOGC=400 GOMEMLIMIT=56.3MiB GOMAXPROCS=1"},
		{name: "no limit, GC off", text: "go_gc_gogc_percent -1\ngo_gc_gomemlimit_bytes 9.223372036854776e+18\ngo_sched_gomaxprocs_threads 2\n",
			want: "GOGC=off GOMEMLIMIT=off GOMAXPROCS=2"},
		{name: "a gauge missing", text: "go_gc_gogc_percent 100\ngo_sched_gomaxprocs_threads 2\n", wantErr: "go_gc_gomemlimit_bytes missing"},
		{name: "not a number", text: "go_gc_gogc_percent x\n", wantErr: "go_gc_gogc_percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRuntimeMetrics(strings.NewReader(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The floor states what it runs with, in the form parsed from tokentailor's
// metrics, so that bench can compare the two lines as strings.
func TestFloorRuntimeLine(t *testing.T) {
	line := tuneFloorRuntime(0, 0)
	if !strings.HasPrefix(line, "GOGC=") || !strings.Contains(line, " GOMAXPROCS=") {
		t.Fatalf("runtime line %q", line)
	}
	log := filepath.Join(t.TempDir(), "floor.log")
	if err := os.WriteFile(log, []byte(line+"\nfloor listening on tcp://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := floorRuntime(log); err != nil || got != line {
		t.Fatalf("floorRuntime = %q, %v; want %q", got, err, line)
	}
	if err := os.WriteFile(log, []byte("floor listening on tcp://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := floorRuntime(log); err == nil {
		t.Fatal("a log without the runtime line was accepted")
	}
}

// NextRaw sends the same bytes Next's request marshals to, warm from the
// prepared copy and cold marshalled on the spot.
func TestSourceNextRaw(t *testing.T) {
	warm := []*authv3.CheckRequest{checkRequest("w0", 0), checkRequest("w1", 1)}
	src := &source{warm: warm, cold: []*authv3.CheckRequest{checkRequest("c0", 0)}, coldEvery: 2}
	if err := src.prepare(); err != nil {
		t.Fatal(err)
	}
	for n := range 2 {
		raw, err := src.NextRaw(0, uint64(n))
		if err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
		var got authv3.CheckRequest
		if err := proto.Unmarshal(raw, &got); err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
		want := "Bearer c0" // n = 0 is cold (every 2nd)
		if n == 1 {
			want = "Bearer w1"
		}
		if h := got.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; h != want {
			t.Errorf("call %d: authorization %q, want %q", n, h, want)
		}
	}
}

// builtFastMarshal reads the tag off a binary: this test binary's agrees
// with what the binary itself reports, and a file that is no Go binary is
// an error.
func TestBuiltFastMarshal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	got, err := builtFastMarshal(exe)
	if err != nil || got != server.FastMarshal() {
		t.Fatalf("builtFastMarshal(test binary) = %v, %v; server.FastMarshal() = %v", got, err, server.FastMarshal())
	}
	notGo := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := builtFastMarshal(notGo); err == nil {
		t.Fatal("a shell script read as a Go binary")
	}
	// A bare name is found in PATH, as exec.Command finds it.
	t.Setenv("PATH", filepath.Dir(exe))
	if got, err := builtFastMarshal(filepath.Base(exe)); err != nil || got != server.FastMarshal() {
		t.Fatalf("builtFastMarshal(%q in PATH) = %v, %v", filepath.Base(exe), got, err)
	}
	if !strings.HasSuffix(runtimeLine(), codecSetting(server.FastMarshal())) {
		t.Fatalf("runtime line %q does not state the codec", runtimeLine())
	}
}
