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
// with the local copies' refreshes the rounds can hold, not with the Checks
// sent: one refresh per token within a max_cache_ttl, one more per further one.
func TestWarmRedisBound(t *testing.T) {
	for _, tt := range []struct {
		elapsed       time.Duration
		wantRefreshes int64
	}{
		{elapsed: 0, wantRefreshes: 1},
		{elapsed: 59 * time.Second, wantRefreshes: 1},
		{elapsed: 60 * time.Second, wantRefreshes: 2},
		{elapsed: 64 * time.Second, wantRefreshes: 2},
		{elapsed: 3 * time.Minute, wantRefreshes: 4},
	} {
		r, cmds := warmRedisBound(100, tt.elapsed, time.Minute)
		if r != tt.wantRefreshes || cmds != 100*refreshCommands*tt.wantRefreshes {
			t.Errorf("after %s: %d refreshes, %d commands; want %d, %d", tt.elapsed, r, cmds, tt.wantRefreshes, 100*refreshCommands*tt.wantRefreshes)
		}
	}
	// The run of 2026-12-04 03:31: one refresh of 100 tokens (598
	// commands) within 8 rounds of 3 s in turns passes; warm Checks that
	// went to Redis (a command or more each) would not.
	if _, cmds := warmRedisBound(100, 70*time.Second, time.Minute); 598 > cmds || 472349 <= cmds {
		t.Errorf("bound %d: want 598 within it and 472349 over it", cmds)
	}
}
