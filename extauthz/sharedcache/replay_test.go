package sharedcache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

// Replay is what the DPoP verifier takes.
var _ dpop.ReplayCache = (*Replay)(nil)

// replica is one tokentailor replica's replay cache: its own memory in front
// of its own client of the shared Redis.
func replica(t *testing.T, addr string, fallBackLocal bool) (*Replay, *Cache) {
	t.Helper()
	c := newTestCache(t, addr, nil)
	return &Replay{Cache: c, Local: dpop.NewMemoryReplay(100, nil), FallBackLocal: fallBackLocal}, c
}

// TestReplayRefusedOnAnotherReplica: a proof recorded by one replica is
// seen by every other one, through a real redis-server.
func TestReplayRefusedOnAnotherReplica(t *testing.T) {
	srv := redistest.Start(t)
	a, ca := replica(t, srv.Addr(), false)
	b, cb := replica(t, srv.Addr(), false)
	ctx := context.Background()
	const jkt, htu, jti = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "https://api.example.com/orders", "e1j3V_bKic8-LAEB"
	key := dpop.ReplayKey(jkt, htu, jti)
	until := time.Now().Add(65 * time.Second)

	tests := []struct {
		name     string
		replay   *Replay
		key      [sha256.Size]byte
		wantSeen bool
	}{
		{name: "first use on replica A", replay: a, key: key, wantSeen: false},
		{name: "replayed to replica B: refused", replay: b, key: key, wantSeen: true},
		{name: "replayed to replica A: refused", replay: a, key: key, wantSeen: true},
		{name: "another jti on replica B", replay: b, key: dpop.ReplayKey(jkt, htu, jti+"x"), wantSeen: false},
		{name: "the same jti for another URI", replay: a, key: dpop.ReplayKey(jkt, htu+"/1", jti), wantSeen: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, err := tt.replay.Add(ctx, tt.key, until)
			if err != nil || seen != tt.wantSeen {
				t.Fatalf("Add = %v, %v; want seen %v", seen, err, tt.wantSeen)
			}
		})
	}
	if got := counter(cb, "add", KindReplay, "seen"); got != 1 {
		t.Errorf("replica B counted %v seen, want 1", got)
	}
	if got := counter(ca, "add", KindReplay, "seen"); got != 0 {
		t.Errorf("replica A asked Redis about a proof its own memory had: %v seen", got)
	}

	// What Redis holds: one key per proof, the keyed hash, expiring with the window.
	rkey := ca.key(KindReplay, replayIssuer, string(key[:]))
	if got := srv.Command("EXISTS", rkey); got != ":1" {
		t.Fatalf("EXISTS %s = %s", rkey, got)
	}
	if got := srv.Command("DBSIZE"); got != ":3" {
		t.Errorf("DBSIZE = %s, want 3 (one per distinct proof)", got)
	}
	for _, raw := range []string{jkt, htu, jti, hex.EncodeToString(key[:]), base64.RawURLEncoding.EncodeToString(key[:])} {
		if strings.Contains(rkey, raw) {
			t.Errorf("the Redis key %q holds %q", rkey, raw)
		}
	}
	pttl, err := strconv.Atoi(strings.TrimPrefix(srv.Command("PTTL", rkey), ":"))
	if err != nil || pttl <= 60_000 || pttl > 65_000 {
		t.Errorf("PTTL = %d (%v), want the acceptance window left (≤ 65 s)", pttl, err)
	}
	t.Logf("redis-server: key %s, EXISTS %s, DBSIZE %s, PTTL %d ms", rkey, srv.Command("EXISTS", rkey), srv.Command("DBSIZE"), pttl)
}

// TestReplayWhenRedisIsDown: a proof Redis cannot record is refused, or
// decided by the local store alone when FallBackLocal is set.
func TestReplayWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	strict, _ := replica(t, srv.Addr(), false)
	lenient, _ := replica(t, srv.Addr(), true)
	srv.Stop()
	ctx := context.Background()
	until := time.Now().Add(time.Minute)

	tests := []struct {
		name     string
		replay   *Replay
		jti      string
		wantSeen bool
		wantErr  error
	}{
		{name: "refuse: a new proof is refused", replay: strict, jti: "p1", wantErr: ErrUnavailable},
		{name: "refuse: the same proof is now seen locally", replay: strict, jti: "p1", wantSeen: true},
		{name: "local: a new proof passes", replay: lenient, jti: "p2"},
		{name: "local: its replay to this replica is refused", replay: lenient, jti: "p2", wantSeen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, err := tt.replay.Add(ctx, dpop.ReplayKey("jkt", "https://a.example/x", tt.jti), until)
			if !errors.Is(err, tt.wantErr) || seen != tt.wantSeen {
				t.Fatalf("Add = %v, %v; want seen %v, error %v", seen, err, tt.wantSeen, tt.wantErr)
			}
		})
	}
}

// TestReplayWithoutCacheIsLocal: a nil Cache (shared_cache not configured)
// leaves the local store alone in charge, and its errors pass through.
func TestReplayWithoutCacheIsLocal(t *testing.T) {
	r := &Replay{Local: dpop.NewMemoryReplay(1, nil)}
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	if seen, err := r.Add(ctx, dpop.ReplayKey("k", "u", "1"), until); seen || err != nil {
		t.Fatalf("first: %v %v", seen, err)
	}
	if seen, err := r.Add(ctx, dpop.ReplayKey("k", "u", "1"), until); !seen || err != nil {
		t.Fatalf("replay: %v %v", seen, err)
	}
	if _, err := r.Add(ctx, dpop.ReplayKey("k", "u", "2"), until); !errors.Is(err, dpop.ErrReplayStore) {
		t.Fatalf("full local store: %v, want dpop.ErrReplayStore", err)
	}
}

// A replay mark lives as long as the window it guards, whatever max_ttl
// caps cached answers at: with marks capped at 1 s, a proof good for 65 s
// was accepted again by another replica after 1.2 s (review finding).
func TestReplayMarkOutlivesMaxTTL(t *testing.T) {
	srv := redistest.Start(t)
	mk := func() *Replay {
		c := newTestCache(t, srv.Addr(), func(o *Options) { o.MaxTTL = time.Second })
		return &Replay{Cache: c, Local: dpop.NewMemoryReplay(100, nil)}
	}
	a, b := mk(), mk()
	key := dpop.ReplayKey("jkt", "https://api.test/x", "jti-1")
	until := time.Now().Add(65 * time.Second)
	if seen, err := a.Add(context.Background(), key, until); seen || err != nil {
		t.Fatalf("first: seen %v, err %v", seen, err)
	}
	time.Sleep(1200 * time.Millisecond)
	seen, err := b.Add(context.Background(), key, until)
	if err != nil || !seen {
		t.Fatalf("replayed to another replica after max_ttl: seen %v, err %v; want seen", seen, err)
	}
}
