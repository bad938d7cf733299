package server

import (
	"context"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

// TestSharedCacheThroughPipelines: Env.Shared reaches the introspector. Two
// pipelines built from one config, each with its own client of one real
// Redis (two replicas): a token checked on the first costs no
// introspection call on the second.
func TestSharedCacheThroughPipelines(t *testing.T) {
	srv := redistest.Start(t)
	client := func() *sharedcache.Cache {
		c, err := sharedcache.New(sharedcache.Options{
			Addresses: []string{srv.Addr()}, Secret: []byte("a deployment secret of at least 32 bytes"),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		select {
		case <-c.Connected():
		case <-time.After(5 * time.Second):
			t.Fatal("shared cache did not connect to redis-server")
		}
		return c
	}
	e := newBenchEnvShared(t, "EdDSA", 1000, client())
	ctx := context.Background()
	p2, err := pipeline.Build(ctx, e.pipe.Config, pipeline.Env{KeySets: pipeline.NewKeySets(ctx), Shared: client()})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for deadline := time.Now().Add(10 * time.Second); p2.Ready() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("second pipeline not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	replicaB := NewAuthz(p2, nil, nil)
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
