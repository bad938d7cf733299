package main

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCommandStats(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "commandstats.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := parseCommandStats(string(b))
	want := map[string]int64{"client|caching": 2000, "get": 2301, "ping": 4, "set": 300, "info": 7}
	if !maps.Equal(got, want) {
		t.Errorf("parseCommandStats = %v, want %v", got, want)
	}
}

func TestDiffKeepsChecksCommandsApartFromBackground(t *testing.T) {
	before := counts{issuer: 10, redis: map[string]int64{"get": 5, "ping": 1, "info": 3}, trips: []int64{4, 7}}
	after := counts{issuer: 12, redis: map[string]int64{"get": 9, "set": 2, "ping": 3, "info": 9}, trips: []int64{6, 11}}
	d := diff(before, after, 4)
	if want := map[string]int64{"get": 4, "set": 2}; !maps.Equal(d.commands, want) {
		t.Errorf("commands = %v, want %v (INFO is the snapshot's own, PING the clients' keep-alive)", d.commands, want)
	}
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{name: "issuer calls", got: d.issuer, want: 2},
		{name: "pings", got: d.pings, want: 2},
		{name: "round trips of all replicas", got: d.trips, want: 6},
		{name: "commands", got: d.redisCommands(), want: 6},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string // read from testdata when set, else text
		text    string
		want    int64
		wantErr string
	}{
		// hit 2000 + miss 300 + set ok 300 + revoke ok 1; local_hit, error
		// and breaker_open never got Redis's answer.
		{name: "a replica's /metrics", file: "metrics-shared.txt", want: 2601},
		{name: "no shared cache", text: "go_goroutines 31\n", want: 0},
		{name: "another metric with the same labels", text: `tokentailor_decisions_total{result="ok"} 5` + "\n", want: 0},
		{name: "not a number", text: `tokentailor_shared_cache_requests_total{kind="exchange",op="get",result="hit"} x` + "\n", wantErr: "metric value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if tc.file != "" {
				b, err := os.ReadFile(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				text = string(b)
			}
			got, err := parseRoundTrips(strings.NewReader(text))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestWarmRedisBound: the Redis commands allowed during the warm rounds grow
// with the visits to Redis the rounds can hold (each token's first, and one
// per max_cache_ttl after it), not with the Checks sent.
func TestWarmRedisBound(t *testing.T) {
	for _, tt := range []struct {
		elapsed    time.Duration
		wantVisits int64
	}{
		{elapsed: 0, wantVisits: 1},
		{elapsed: 59 * time.Second, wantVisits: 1},
		{elapsed: 60 * time.Second, wantVisits: 2},
		{elapsed: 64 * time.Second, wantVisits: 2},
		{elapsed: 3 * time.Minute, wantVisits: 4},
	} {
		v, cmds := warmRedisBound(100, tt.elapsed, time.Minute)
		if v != tt.wantVisits || cmds != 100*refreshCommands*tt.wantVisits {
			t.Errorf("after %s: %d visits, %d commands; want %d, %d", tt.elapsed, v, cmds, tt.wantVisits, 100*refreshCommands*tt.wantVisits)
		}
	}
	// 8 rounds of 3 s in turns last about 70 s: 100 tokens first sent and
	// refreshed once (6 commands each time: about 1,200) pass; warm Checks
	// that went to Redis (a command or more each, 472,349 of them in that
	// run) would not.
	if _, cmds := warmRedisBound(100, 70*time.Second, time.Minute); 1200 > cmds || 472349 <= cmds {
		t.Errorf("bound %d: want 1200 within it and 472349 over it", cmds)
	}
}

// TestCheckSlice: 0 means whole runs; a negative or sub-millisecond turn is
// refused rather than run as billions of turns or silently as whole runs.
func TestCheckSlice(t *testing.T) {
	for _, tt := range []struct {
		slice time.Duration
		ok    bool
	}{
		{0, true}, {time.Millisecond, true}, {100 * time.Millisecond, true},
		{-time.Millisecond, false}, {time.Nanosecond, false}, {999 * time.Microsecond, false},
	} {
		if err := checkSlice(tt.slice); (err == nil) != tt.ok {
			t.Errorf("checkSlice(%s) = %v, want ok %v", tt.slice, err, tt.ok)
		}
	}
}
