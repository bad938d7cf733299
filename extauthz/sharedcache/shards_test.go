package sharedcache

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

// TestKeySlotIsRedisClusterKeyslot: keySlot agrees with what a Redis 7
// cluster node answered to CLUSTER KEYSLOT for each key, hash tags included.
func TestKeySlotIsRedisClusterKeyslot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint16
	}{
		{key: "", want: 0},
		{key: "123456789", want: 12739},
		{key: "foo", want: 12182},
		{key: "bar", want: 5061},
		{key: "user1000", want: 3443},
		{key: "{user1000}.following", want: 3443},
		{key: "foo{}{bar}", want: 8363},    // an empty tag: the whole key
		{key: "foo{{bar}}zap", want: 4015}, // the tag is "{bar"
		{key: "{bar", want: 4015},          // no closing brace: the whole key
		{key: "foo{bar}{zap}", want: 5061}, // the first tag only
		{key: "bar}x{", want: 7325},
		{key: "tokentailor:i:{abc}", want: 7638},
	} {
		if got := keySlot(tc.key); got != tc.want {
			t.Errorf("keySlot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// TestDeadMasterLeavesTheOtherMastersServed: a master of a Cluster dies or
// stops answering, and no replica takes over. Until the cluster itself
// declares it failed (cluster-node-timeout, 2 s), the other masters' keys
// are read without one failure, while the dead master's keys fail and open
// its breaker alone: one breaker per master.
func TestDeadMasterLeavesTheOtherMastersServed(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*redistest.Server)
	}{
		{name: "killed", stop: (*redistest.Server).Stop},
		{name: "frozen", stop: (*redistest.Server).Freeze},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := redistest.StartCluster(t, 3)
			dead := c.Masters[0] // Stop, at the end, kills a frozen server too
			sc := newTestCache(t, dead.Addr(), func(o *Options) {
				o.Mode, o.Addresses = ModeCluster, c.Addrs()
				o.Timeout = 200 * time.Millisecond // a frozen master costs this per call until its breaker opens
				o.BreakerCooldown = time.Minute
			})
			ctx := context.Background()
			eventually(t, 5*time.Second, "the slot map read", func() bool {
				m := sc.slots.Load()
				return m != nil && len(m.masters) == 3
			})
			var onDead, onLive []int
			hashes := make([]string, 48)
			for i := range hashes {
				hashes[i] = extauthz.TokenHash(tc.name + "-" + strconv.Itoa(i))
				if err := sc.Set(ctx, KindIntrospection, issuer, hashes[i], []byte("v"+strconv.Itoa(i)), time.Now().Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				key := sc.key(KindIntrospection, issuer, hashes[i])
				if got, want := dead.Command("CLUSTER", "KEYSLOT", key), ":"+strconv.Itoa(int(keySlot(key))); got != want {
					t.Fatalf("CLUSTER KEYSLOT %s = %s, keySlot says %s", key, got, want)
				}
				m := sc.slots.Load()
				if m.masters[m.slot[keySlot(key)]-1].addr == dead.Addr() {
					onDead = append(onDead, i)
				} else {
					onLive = append(onLive, i)
				}
			}
			if len(onDead) < 3 || len(onLive) == 0 {
				t.Fatalf("%d keys on the master to stop, %d on the others", len(onDead), len(onLive))
			}
			time.Sleep(newMasterGrace) // the breakers count failures from now on

			tc.stop(dead)
			stopped := time.Now()
			rounds := 0
			for ; time.Since(stopped) < time.Second; rounds++ {
				// The dead master's keys first, as a burst, then the others.
				for _, i := range onDead {
					if _, ok, err := sc.Get(ctx, KindIntrospection, issuer, hashes[i]); ok || !errors.Is(err, ErrUnavailable) {
						t.Fatalf("a key of the stopped master: ok=%v err=%v", ok, err)
					}
				}
				for _, i := range onLive {
					v, ok, err := sc.Get(ctx, KindIntrospection, issuer, hashes[i])
					if err != nil || !ok || string(v) != "v"+strconv.Itoa(i) {
						t.Fatalf("a key of a live master, %v after the stop: %q ok=%v err=%v", time.Since(stopped), v, ok, err)
					}
				}
			}
			t.Logf("%d rounds of reads in the second after the stop", rounds)
			deadKey := sc.key(KindIntrospection, issuer, hashes[onDead[0]])
			if b := sc.breakerFor(deadKey); b == sc.breaker || b.State() != gobreaker.StateOpen {
				t.Errorf("the stopped master's breaker: %v, cache-wide %v", b.State(), b == sc.breaker)
			}
			for _, i := range onLive {
				if b := sc.breakerFor(sc.key(KindIntrospection, issuer, hashes[i])); b.State() != gobreaker.StateClosed {
					t.Errorf("a live master's breaker: %v", b.State())
				}
			}
			if sc.breaker.State() != gobreaker.StateClosed {
				t.Errorf("the cache-wide breaker: %v", sc.breaker.State())
			}
			if got := testutil.ToFloat64(sc.metrics.breaker); got != float64(gobreaker.StateOpen) {
				t.Errorf("breaker gauge %v, want the most open state, open", got)
			}
		})
	}
}
