package sharedcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

// fromBlock builds a Cache from a config whose shared_cache block holds
// block (addresses, mode, …) and a key secret file, as a replica would at
// start, and waits until it is connected and subscribed.
func fromBlock(t *testing.T, block string) *Cache {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), append(testSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(baseConfig+"shared_cache:\n  key_secret: {file: key}\n  timeout: 500ms\n"+block), dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := FromConfig(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	waitConnected(t, sc, 10*time.Second)
	return sc
}

// yamlList renders addrs as a YAML flow sequence.
func yamlList(addrs []string) string { return "[" + strings.Join(addrs, ", ") + "]" }

// revocations records what OnRevoke functions are told.
type revocations struct {
	mu   sync.Mutex
	list []Revocation
}

func (r *revocations) add(x Revocation) { r.mu.Lock(); r.list = append(r.list, x); r.mu.Unlock() }

func (r *revocations) has(want Revocation) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.list {
		if x == want {
			return true
		}
	}
	return false
}

// TestTopologiesShareAnswersAndRevocations: through the addresses of a
// standalone server, of Sentinels and of Cluster seed nodes, two replicas
// built from config see each other's answers, and a revocation by one
// reaches the other within a second (notice, mark, answer gone).
func TestTopologiesShareAnswersAndRevocations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block func(t *testing.T) (block string, nodes []*redistest.Server)
	}{
		{name: "standalone", block: func(t *testing.T) (string, []*redistest.Server) {
			srv := redistest.Start(t)
			return "  addresses: " + srv.Addr() + "\n", []*redistest.Server{srv}
		}},
		{name: "sentinel", block: func(t *testing.T) (string, []*redistest.Server) {
			s := redistest.StartSentinel(t, "tt-master")
			return "  mode: sentinel\n  sentinel_master: tt-master\n  addresses: [" + s.Sentinel.Addr() + "]\n",
				[]*redistest.Server{s.Master}
		}},
		{name: "cluster", block: func(t *testing.T) (string, []*redistest.Server) {
			c := redistest.StartCluster(t, 3)
			return "  mode: cluster\n  addresses: " + yamlList(c.Addrs()) + "\n", c.Masters
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			block, nodes := tc.block(t)
			a, b := fromBlock(t, block), fromBlock(t, block)
			heard := &revocations{}
			b.OnRevoke(heard.add)
			ctx := context.Background()

			// Enough tokens that a cluster spreads them over every node.
			hashes := make([]string, 48)
			for i := range hashes {
				hashes[i] = extauthz.TokenHash(tc.name + "-token-" + strconv.Itoa(i))
				if err := a.Set(ctx, KindIntrospection, issuer, hashes[i], []byte("answer-"+strconv.Itoa(i)), time.Now().Add(time.Minute)); err != nil {
					t.Fatalf("Set %d: %v", i, err)
				}
			}
			for i, h := range hashes {
				v, ok, err := b.Get(ctx, KindIntrospection, issuer, h)
				if err != nil || !ok || string(v) != "answer-"+strconv.Itoa(i) {
					t.Fatalf("the other replica reads token %d: %q ok=%v err=%v", i, v, ok, err)
				}
			}
			for i, n := range nodes {
				if got := n.Command("DBSIZE"); got == ":0" {
					t.Errorf("node %d holds no key: the answers did not spread over the topology", i)
				}
			}

			start := time.Now()
			if err := a.Revoke(ctx, issuer, hashes[0], time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Second, "the other replica told, marked and cleared", func() bool {
				revoked, _ := b.Revoked(ctx, issuer, hashes[0])
				_, ok, _ := b.Get(ctx, KindIntrospection, issuer, hashes[0])
				return heard.has(Revocation{Issuer: issuer, TokenHash: hashes[0]}) && revoked && !ok
			})
			t.Logf("%s: revocation seen by the other replica within %v", tc.name, time.Since(start))
			if revoked, _ := b.Revoked(ctx, issuer, hashes[1]); revoked {
				t.Error("another token is revoked too")
			}
		})
	}
}

// TestSentinelFailover: the master dies; once the Sentinel has promoted the
// replica, both replicas of tokentailor read what was written before, write
// again, and revocation notices flow again, the lost subscription having
// told the handlers to drop what notices they may have missed.
func TestSentinelFailover(t *testing.T) {
	s := redistest.StartSentinel(t, "tt-failover")
	// A cooldown far beyond the waits below: writing again must not wait
	// for the breaker the dead master opened to let a probe through.
	block := "  mode: sentinel\n  sentinel_master: tt-failover\n  addresses: [" + s.Sentinel.Addr() + "]\n  breaker_cooldown: 1m\n"
	a, b := fromBlock(t, block), fromBlock(t, block)
	heard := &revocations{}
	b.OnRevoke(heard.add)
	ctx := context.Background()
	before, after := extauthz.TokenHash("written-before"), extauthz.TokenHash("written-after")
	if err := a.Set(ctx, KindIntrospection, issuer, before, []byte("before"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.WaitReplicated(t) // WAIT from a connection of its own would wait for nothing

	took := s.KillMaster(t)
	t.Logf("replica promoted %v after the master was killed", took)
	// 9 s: three times what the design allows (rueidis switches when the
	// Sentinel announces the promotion; the Cache follows within a second).
	recovered := eventually(t, 9*time.Second, "writes succeed on the new master", func() bool {
		return a.Set(ctx, KindIntrospection, issuer, after, []byte("after"), time.Now().Add(time.Minute)) == nil
	})
	t.Logf("writes back %v after the promotion", recovered)
	for _, tc := range []struct {
		name, hash, want string
	}{
		{name: "written before the failover", hash: before, want: "before"},
		{name: "written after the failover", hash: after, want: "after"},
	} {
		eventually(t, 10*time.Second, "the other replica reads the value "+tc.name, func() bool {
			v, ok, err := b.Get(ctx, KindIntrospection, issuer, tc.hash)
			return err == nil && ok && string(v) == tc.want
		})
	}
	eventually(t, 10*time.Second, "handlers told to drop everything after resubscribing", func() bool {
		return heard.has(Revocation{All: true})
	})
	eventually(t, 10*time.Second, "a revocation after the failover reaches the other replica", func() bool {
		_ = a.Revoke(ctx, issuer, after, time.Now().Add(time.Minute))
		return heard.has(Revocation{Issuer: issuer, TokenHash: after})
	})
	if revoked, err := b.Revoked(ctx, issuer, after); !revoked || err != nil {
		t.Errorf("Revoked after the failover = %v, %v", revoked, err)
	}
}

// TestClusterFailover: a master of a Cluster dies; once its replica has
// taken its slots over, the replicas of tokentailor read what was written
// before (on every master) within a few seconds, whether they served reads
// through the failover or did nothing meanwhile, write again, and
// revocations flow again.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartClusterWithReplicas(t, 3)
	// A cooldown far beyond the wait below: reading again must not wait
	// for a breaker that the dead master opened to let a probe through.
	block := "  mode: cluster\n  addresses: " + yamlList(c.Addrs()) + "\n  breaker_cooldown: 1m\n"
	a, b, busy := fromBlock(t, block), fromBlock(t, block), fromBlock(t, block)
	heard := &revocations{}
	b.OnRevoke(heard.add)
	ctx := context.Background()
	hashes := make([]string, 48)
	for i := range hashes {
		hashes[i] = extauthz.TokenHash("cluster-failover-" + strconv.Itoa(i))
		if err := a.Set(ctx, KindIntrospection, issuer, hashes[i], []byte("v"+strconv.Itoa(i)), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReplicated(t) // else the take-over may lose a value, and no replica can read it
	// busy reads a value every 2 ms through the failover, as a replica
	// serving Checks does: its calls to the dead master open that master's
	// breaker.
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	traffic.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_, _, _ = busy.Get(ctx, KindIntrospection, issuer, hashes[rand.IntN(len(hashes))])
		}
	})
	t.Cleanup(func() { close(stop); traffic.Wait() })

	killed := c.Masters[0].Command("DBSIZE")
	took := c.KillMaster(t, 0)
	tookOver := time.Now()
	t.Logf("replica took over %v after its master (%s keys) was killed", took, killed)

	after := extauthz.TokenHash("cluster-written-after")
	recovered := eventually(t, 15*time.Second, "writes succeed again", func() bool {
		return a.Set(ctx, KindIntrospection, issuer, after, []byte("after"), time.Now().Add(time.Minute)) == nil
	})
	t.Logf("writes back %v after the take-over", recovered)
	// Each replica reads the slot map every topologyRefresh; the new
	// master's breaker is its own, closed, and counts no failure for
	// newMasterGrace while rueidis, which also reads the map every
	// topologyRefresh, may still route to the dead node. So every value is
	// read within topologyRefresh + newMasterGrace (3 s) of the take-over;
	// three times that leaves room for a busy machine. Reads fall back to a
	// miss meanwhile (the issuer is asked), never to a wrong value.
	const within = 3 * (topologyRefresh + newMasterGrace)
	var lastMiss string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last read that failed: %s", lastMiss)
		}
	})
	readsEverything := func(name string, r *Cache) func() bool {
		return func() bool {
			for i, h := range hashes {
				v, ok, err := r.Get(ctx, KindIntrospection, issuer, h)
				if err != nil || !ok || string(v) != "v"+strconv.Itoa(i) {
					lastMiss = fmt.Sprintf("%s, value %d: found %v, %q, error %v", name, i, ok, v, err)
					return false
				}
			}
			return true
		}
	}
	for _, r := range []struct {
		name string
		c    *Cache
	}{
		{name: "the replica idle through the failover", c: b},
		{name: "the replica busy through the failover", c: busy},
	} {
		eventually(t, time.Until(tookOver.Add(within)), r.name+" reads every value written before", readsEverything(r.name, r.c))
		t.Logf("%s reads every value %v after the take-over", r.name, time.Since(tookOver))
	}
	eventually(t, 10*time.Second, "a revocation after the failover reaches the other replica", func() bool {
		_ = a.Revoke(ctx, issuer, hashes[0], time.Now().Add(time.Minute))
		return heard.has(Revocation{Issuer: issuer, TokenHash: hashes[0]})
	})
	eventually(t, time.Second, "the mark and the answer on the other replica", func() bool {
		revoked, _ := b.Revoked(ctx, issuer, hashes[0])
		_, ok, _ := b.Get(ctx, KindIntrospection, issuer, hashes[0])
		return revoked && !ok
	})
}
