package sharedcache

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
				time.Sleep(time.Millisecond)
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

// unconnected is a Cache of mode that never connects, so that nothing but
// the test sets its slot map; its breakers open after 3 failures, for a
// minute.
func unconnected(t *testing.T, mode Mode) *Cache {
	t.Helper()
	c, err := New(Options{
		Mode:            mode,
		SentinelMaster:  "m",
		Addresses:       []string{redistest.ClosedAddr(t)},
		Secret:          testSecret,
		BreakerFailures: 3,
		BreakerCooldown: time.Minute,
		Registerer:      prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// failThrice makes b fail three times in a row: enough to open it.
func failThrice(b *gobreaker.CircuitBreaker[struct{}]) {
	for range 3 {
		_, _ = b.Execute(func() (struct{}, error) { return struct{}{}, errors.New("connection refused") })
	}
}

// TestNewSlotMapKeepsBreakersAndGracesNewMasters: a new slot map keeps the
// breaker of every master still in it, open or not; a master that joins
// the map later (a replica that took over) gets a closed breaker that
// counts no failure for newMasterGrace; the gauge follows the masters in
// the map.
func TestNewSlotMapKeepsBreakersAndGracesNewMasters(t *testing.T) {
	c := unconnected(t, ModeCluster)
	// keyA lies in the first half of the slots, keyB in the second.
	var keyA, keyB string
	for i := 0; keyA == "" || keyB == ""; i++ {
		k := c.key(KindIntrospection, issuer, strconv.Itoa(i))
		if keySlot(k) < clusterSlots/2 {
			keyA = k
		} else {
			keyB = k
		}
	}
	gauge := func() gobreaker.State { return gobreaker.State(testutil.ToFloat64(c.metrics.breaker)) }

	c.setSlots([]slotRange{{from: 0, to: 8191, id: "a", addr: "10.0.0.1:6379"}, {from: 8192, to: 16383, id: "b", addr: "10.0.0.2:6379"}})
	a, b := c.breakerFor(keyA), c.breakerFor(keyB)
	if a == b || a == c.breaker || b == c.breaker {
		t.Fatal("the two masters do not have breakers of their own")
	}
	failThrice(a)
	if a.State() != gobreaker.StateOpen || b.State() != gobreaker.StateClosed || gauge() != gobreaker.StateOpen {
		t.Fatalf("after 3 failures on master a: a %v, b %v, gauge %v", a.State(), b.State(), gauge())
	}

	// Master a dies and replica c takes its slots over.
	c.setSlots([]slotRange{{from: 0, to: 8191, id: "c", addr: "10.0.0.3:6379"}, {from: 8192, to: 16383, id: "b", addr: "10.0.0.2:6379"}})
	if c.breakerFor(keyB) != b {
		t.Error("master b lost its breaker")
	}
	nc := c.breakerFor(keyA)
	if nc == a || nc.State() != gobreaker.StateClosed || gauge() != gobreaker.StateClosed {
		t.Fatalf("the new master's breaker: the old one %v, %v, gauge %v", nc == a, nc.State(), gauge())
	}
	failThrice(nc)
	if nc.State() != gobreaker.StateClosed {
		t.Errorf("the new master's breaker counted failures in its grace: %v", nc.State())
	}
	failThrice(b)
	if b.State() != gobreaker.StateOpen || gauge() != gobreaker.StateOpen {
		t.Errorf("a master of the first map: %v, gauge %v", b.State(), gauge())
	}

	// A node that has not heard of the take-over answers the old map: dead
	// master a comes back with its own breaker, still open, and no grace.
	c.setSlots([]slotRange{{from: 0, to: 8191, id: "a", addr: "10.0.0.1:6379"}, {from: 8192, to: 16383, id: "b", addr: "10.0.0.2:6379"}})
	if got := c.breakerFor(keyA); got != a || got.State() != gobreaker.StateOpen {
		t.Errorf("master a back in an out-of-date map: its own breaker %v, state %v; want its open breaker", got == a, got.State())
	}
	// And the map that follows gives c its breaker back.
	c.setSlots([]slotRange{{from: 0, to: 8191, id: "c", addr: "10.0.0.3:6379"}, {from: 8192, to: 16383, id: "b", addr: "10.0.0.2:6379"}})
	if c.breakerFor(keyA) != nc {
		t.Error("master c back in the map: a breaker other than its own")
	}
}

// TestSortRangesRefusesMapsNotToInstall: what a node answers to CLUSTER
// SLOTS is installed only when it names some slot and no slot twice.
func TestSortRangesRefusesMapsNotToInstall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []slotRange
		ok     bool
	}{
		{name: "none: a node that serves no slot"},
		{name: "one range", ranges: []slotRange{{from: 0, to: 16383, id: "a"}}, ok: true},
		{name: "out of order", ranges: []slotRange{{from: 8192, to: 16383, id: "b"}, {from: 0, to: 8191, id: "a"}}, ok: true},
		{name: "a gap", ranges: []slotRange{{from: 0, to: 10, id: "a"}, {from: 20, to: 30, id: "b"}}, ok: true},
		{name: "overlap", ranges: []slotRange{{from: 0, to: 8192, id: "a"}, {from: 8192, to: 16383, id: "b"}}},
		{name: "the same range twice", ranges: []slotRange{{from: 0, to: 16383, id: "a"}, {from: 0, to: 16383, id: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sortRanges(tc.ranges)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errSlots)) {
				t.Fatalf("sortRanges: %v, want ok %v", err, tc.ok)
			}
			if err == nil && !slices.IsSortedFunc(tc.ranges, func(a, b slotRange) int { return int(a.from) - int(b.from) }) {
				t.Fatalf("not sorted: %v", tc.ranges)
			}
		})
	}
}

// TestSentinelFailbackGetsANewBreaker: in sentinel mode the client switches
// to a master only once it answers as one, so a master that comes back
// (a quick failback) gets a new, closed breaker, not the open one it left.
func TestSentinelFailbackGetsANewBreaker(t *testing.T) {
	c := unconnected(t, ModeSentinel)
	key := c.key(KindIntrospection, issuer, "h")
	master := func(addr string) []slotRange {
		return []slotRange{{from: 0, to: clusterSlots - 1, id: addr, addr: addr}}
	}
	c.setSlots(master("10.0.0.1:6379"))
	a := c.breakerFor(key)
	failThrice(a)
	if a == c.breaker || a.State() != gobreaker.StateOpen {
		t.Fatalf("the master's own breaker: %v, state %v", a != c.breaker, a.State())
	}
	c.setSlots(master("10.0.0.2:6379"))
	if b := c.breakerFor(key); b == a || b.State() != gobreaker.StateClosed {
		t.Fatalf("the promoted master's breaker: new %v, state %v", b != a, b.State())
	}
	c.setSlots(master("10.0.0.1:6379"))
	if got := c.breakerFor(key); got == a || got.State() != gobreaker.StateClosed {
		t.Fatalf("the master back after a failback: its old breaker %v, state %v; want a new, closed one", got == a, got.State())
	}
}
