package server

import (
	"context"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/sharedtest"
)

// TestSharedCacheThroughPipelines: Env.Shared reaches the introspector. Two
// pipelines built from one config, each with its own client of one real
// Redis (two replicas): a token checked on the first costs no
// introspection call on the second.
func TestSharedCacheThroughPipelines(t *testing.T) {
	srv := redistest.Start(t)
	e := newBenchEnvShared(t, "EdDSA", 1000, sharedtest.Connect(t, srv.Addr(), 0))
	ctx := context.Background()
	replicaB := sharedReplica(t, e.pipe.Config, sharedtest.Connect(t, srv.Addr(), 0))
	req := benchCheckRequest(e.opaque("alice"))
	e.check(t, req)
	calls := e.intro.Calls()
	resp, err := replicaB.Check(ctx, req)
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("replica B: %v %v", err, resp.GetDeniedResponse())
	}
	if n := e.intro.Calls() - calls; n != 0 {
		t.Errorf("replica B made %d introspection calls, want 0 (answer shared)", n)
	}
}

// sharedReplica is another replica of the same deployment: a pipeline built
// from cfg with its own client shared of the same Redis and its own memory,
// ready, closed when the test ends.
func sharedReplica(t *testing.T, cfg *config.Config, shared *sharedcache.Cache) *Authz {
	t.Helper()
	ctx := context.Background()
	p, err := pipeline.Build(ctx, cfg, pipeline.Env{KeySets: pipeline.NewKeySets(ctx), Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	for deadline := time.Now().Add(10 * time.Second); p.Ready() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("replica pipeline not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return NewAuthz(p, nil, nil)
}
