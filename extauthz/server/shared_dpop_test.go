package server

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// TestSharedDPoPReplayThroughPipelines: with shared_cache configured, a
// DPoP proof accepted by one replica is refused by another. Replica A is a
// whole server built from a config with shared_cache; replica B a pipeline
// built from the same config with its own client of the same real Redis and
// its own memory.
func TestSharedDPoPReplayThroughPipelines(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("TT_SHARED_KEY", sharedtest.Secret)
	cfg := senderConfig + "shared_cache:\n  addresses: [" + srv.Addr() + "]\n  key_secret: {env: TT_SHARED_KEY}\n"
	h := newHarness(t, cfg)
	sharedtest.WaitConnected(t, h.srv.shared, "replica A's shared cache")
	replicaB := sharedReplica(t, h.srv.Authz().Pipeline().Config, sharedtest.Connect(t, srv.Addr(), 0))
	ctx := context.Background()
	checkB := func(t *testing.T, headers map[string]string) int {
		t.Helper()
		resp, err := replicaB.Check(ctx, checkRequest("GET", "/opt/1", headers))
		if err != nil {
			t.Fatal(err)
		}
		return httpStatus(resp)
	}
	checkA := func(t *testing.T, headers map[string]string) int {
		t.Helper()
		return httpStatus(h.check("GET", "/opt/1", headers))
	}

	c := newDPoPClient(t)
	bound := h.token(jwt.MapClaims{"cnf": map[string]any{"jkt": c.jkt}})
	const htu = "http://app.test/opt/1"
	first, second := c.proof("GET", htu, bound, nil), c.proof("GET", htu, bound, nil)
	with := func(proof string) map[string]string {
		return map[string]string{"authorization": "DPoP " + bound, "dpop": proof}
	}
	tests := []struct {
		name       string
		check      func(*testing.T, map[string]string) int
		proof      string
		wantStatus int
	}{
		{name: "A accepts a new proof", check: checkA, proof: first, wantStatus: 200},
		{name: "B refuses it", check: checkB, proof: first, wantStatus: 401},
		{name: "B accepts another new proof", check: checkB, proof: second, wantStatus: 200},
		{name: "A refuses that one", check: checkA, proof: second, wantStatus: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.check(t, with(tt.proof)); got != tt.wantStatus {
				t.Fatalf("status %d, want %d", got, tt.wantStatus)
			}
		})
	}
}

// TestSharedDPoPReplayWhenRedisIsDown: dpop.shared_replay_down decides what
// a proof that Redis cannot record gets: 503 (refuse, the default) or the
// local replay cache's answer (local).
func TestSharedDPoPReplayWhenRedisIsDown(t *testing.T) {
	h := newHarness(t, senderConfig)
	// Nothing listens there: every call fails at once, "not connected".
	down, err := sharedcache.New(sharedcache.Options{Addresses: []string{redistest.ClosedAddr(t)}, Secret: []byte(sharedtest.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	c := newDPoPClient(t)
	bound := h.token(jwt.MapClaims{"cnf": map[string]any{"jkt": c.jkt}})
	const htu = "http://app.test/opt/1"

	tests := []struct {
		name       string
		setting    string
		wantStatus []int // a new proof, then the same proof again
	}{
		{name: "refuse: 503, the proof may have been seen elsewhere", setting: "refuse", wantStatus: []int{503, 401}},
		{name: "local: this replica's cache decides", setting: "local", wantStatus: []int{200, 401}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cfg := *h.srv.Authz().Pipeline().Config
			cfg.DPoP.SharedReplayDown = tt.setting
			a := sharedReplica(t, &cfg, down)
			proof := c.proof("GET", htu, bound, nil)
			for i, want := range tt.wantStatus {
				resp, err := a.Check(ctx, checkRequest("GET", "/opt/1", map[string]string{"authorization": "DPoP " + bound, "dpop": proof}))
				if err != nil {
					t.Fatal(err)
				}
				if got := httpStatus(resp); got != want {
					t.Fatalf("check %d: status %d, want %d", i+1, got, want)
				}
			}
		})
	}
}
