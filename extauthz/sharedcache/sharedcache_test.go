package sharedcache

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

const issuer = "https://issuer.example"

// newTestCache connects a Cache to addr and waits until it is subscribed.
func newTestCache(t testing.TB, addr string, mod func(*Options)) *Cache {
	t.Helper()
	o := Options{
		Addresses:       []string{addr},
		Secret:          testSecret,
		Timeout:         50 * time.Millisecond,
		BreakerFailures: 3,
		BreakerCooldown: 300 * time.Millisecond,
		Registerer:      prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	waitConnected(t, c, 5*time.Second)
	return c
}

func waitConnected(t testing.TB, c *Cache, d time.Duration) {
	t.Helper()
	select {
	case <-c.Connected():
	case <-time.After(d):
		t.Fatalf("not connected and subscribed after %v", d)
	}
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
	return 0
}

func counter(c *Cache, op string, kind Kind, result string) float64 {
	return testutil.ToFloat64(c.metrics.requests.WithLabelValues(op, kind.String(), result))
}

func TestTwoReplicasShareAnswersAndStayCoherent(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestCache(t, srv.Addr(), nil), newTestCache(t, srv.Addr(), nil)
	ctx := context.Background()
	h := extauthz.TokenHash("opaque-token-1")

	if _, ok, err := b.Get(ctx, KindIntrospection, issuer, h); ok || err != nil {
		t.Fatalf("before any Set: ok=%v err=%v, want a miss", ok, err)
	}
	if err := a.Set(ctx, KindIntrospection, issuer, h, []byte("answer-1"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// b holds a client-side copy of the miss; Redis's invalidation of it
	// travels beside a's SET reply, so b sees the value within moments.
	took := eventually(t, time.Second, "the other replica sees the first value", func() bool {
		v, _, _ := b.Get(ctx, KindIntrospection, issuer, h)
		return string(v) == "answer-1"
	})
	t.Logf("first value seen by the other replica after %v", took)
	for i, wantResult := range []string{"local_hit", "local_hit"} {
		v, ok, err := b.Get(ctx, KindIntrospection, issuer, h)
		if err != nil || !ok || string(v) != "answer-1" {
			t.Fatalf("read %d on the other replica: %q ok=%v err=%v", i, v, ok, err)
		}
		if got := counter(b, "get", KindIntrospection, wantResult); got < 1 {
			t.Fatalf("read %d: no %s counted", i, wantResult)
		}
	}
	if got := counter(b, "get", KindIntrospection, "local_hit"); got < 2 {
		t.Errorf("local hits = %v, want ≥ 2: reads after the first cost no round trip", got)
	}
	// A write on one replica invalidates the other's client-side copy.
	if err := a.Set(ctx, KindIntrospection, issuer, h, []byte("answer-2"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, time.Second, "the other replica sees the new value", func() bool {
		v, _, _ := b.Get(ctx, KindIntrospection, issuer, h)
		return string(v) == "answer-2"
	})
	t.Logf("new value seen by the other replica after %v", took)

	// Kinds and issuers are separate key spaces.
	for _, tc := range []struct {
		name   string
		kind   Kind
		issuer string
	}{
		{name: "other kind", kind: KindExchange, issuer: issuer},
		{name: "other issuer", kind: KindIntrospection, issuer: "https://other.example"},
	} {
		if _, ok, err := b.Get(ctx, tc.kind, tc.issuer, h); ok || err != nil {
			t.Errorf("%s: ok=%v err=%v, want a miss", tc.name, ok, err)
		}
	}
}

func TestRevocationReachesEveryReplicaWithinASecond(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	h := extauthz.TokenHash("opaque-token-revoked")
	type seen struct {
		mu   sync.Mutex
		list []Revocation
	}
	var replicas []*Cache
	var heard []*seen
	for range 3 {
		c := newTestCache(t, srv.Addr(), nil)
		s := &seen{}
		c.OnRevoke(func(r Revocation) { s.mu.Lock(); s.list = append(s.list, r); s.mu.Unlock() })
		replicas, heard = append(replicas, c), append(heard, s)
	}
	a := replicas[0]
	if err := a.Set(ctx, KindIntrospection, issuer, h, []byte("active"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, c := range replicas[1:] { // client-side copies on the others
		if _, ok, err := c.Get(ctx, KindIntrospection, issuer, h); !ok {
			t.Fatalf("answer not shared: %v", err)
		}
		if revoked, err := c.Revoked(ctx, issuer, h); revoked || err != nil {
			t.Fatalf("revoked before Revoke: %v %v", revoked, err)
		}
	}
	start := time.Now()
	if err := a.Revoke(ctx, issuer, h, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i, c := range replicas {
		s := heard[i]
		eventually(t, time.Second-time.Since(start), "every replica is told", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.list) > 0
		})
		s.mu.Lock()
		if got := s.list[0]; got != (Revocation{Issuer: issuer, TokenHash: h}) {
			t.Errorf("replica %d was told %+v", i, got)
		}
		s.mu.Unlock()
		eventually(t, time.Second-time.Since(start), "Revoked and the answer gone", func() bool {
			revoked, err1 := c.Revoked(ctx, issuer, h)
			_, ok, err2 := c.Get(ctx, KindIntrospection, issuer, h)
			if err1 != nil || err2 != nil {
				t.Logf("replica %d: %v %v", i, err1, err2)
			}
			return revoked && !ok
		})
	}
	t.Logf("three replicas told, marked and cleared within %v", time.Since(start))
	if other, _ := replicas[1].Revoked(ctx, issuer, extauthz.TokenHash("another")); other {
		t.Error("another token is revoked too")
	}
}

func TestRedisSeesNoTokenAndCannotMoveValues(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestCache(t, srv.Addr(), nil)
	ctx := context.Background()
	token := "opaque-token-secret-value"
	h := extauthz.TokenHash(token)
	if err := c.Set(ctx, KindIntrospection, issuer, h, []byte(`{"sub":"alice"}`), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, issuer, extauthz.TokenHash("other-token"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	keys := srv.Do("KEYS", "*")
	if len(keys) != 2 {
		t.Fatalf("keys %q, want an answer and a revocation mark", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, DefaultKeyPrefix) {
			t.Errorf("key %q lacks the prefix", k)
		}
		v := strings.Join(srv.Do("GET", k), "")
		for _, secret := range []string{token, h, h[:12], issuer, "alice"} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Errorf("Redis holds %q in key %q or its value", secret, k)
			}
		}
	}
	// A reader with another secret finds nothing.
	other := newTestCache(t, srv.Addr(), func(o *Options) { o.Secret = bytes.Repeat([]byte("x"), 32) })
	if _, ok, err := other.Get(ctx, KindIntrospection, issuer, h); ok || err != nil {
		t.Errorf("another secret: ok=%v err=%v, want a miss", ok, err)
	}
	// A value copied under another token's key is refused (sealed with its key).
	h2 := extauthz.TokenHash("attacker-token")
	srv.Do("SET", c.key(KindIntrospection, issuer, h2), srv.Do("GET", c.key(KindIntrospection, issuer, h))[0])
	if _, ok, err := c.Get(ctx, KindIntrospection, issuer, h2); ok || err != nil {
		t.Errorf("moved value: ok=%v err=%v, want a miss", ok, err)
	}
	if got := counter(c, "get", KindIntrospection, "malformed"); got != 1 {
		t.Errorf("malformed count %v, want 1", got)
	}
}

func TestEntriesNeverOutliveTheirExpiryOrMaxTTL(t *testing.T) {
	srv := redistest.Start(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newTestCache(t, srv.Addr(), func(o *Options) {
		o.MaxTTL = 30 * time.Second
		o.Now = func() time.Time { return now }
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		expiresAt time.Time
		wantMin   time.Duration // 0: nothing stored
		wantMax   time.Duration
	}{
		{name: "token expiry", expiresAt: now.Add(10 * time.Second), wantMin: 9 * time.Second, wantMax: 10 * time.Second},
		{name: "capped by MaxTTL", expiresAt: now.Add(2 * time.Hour), wantMin: 29 * time.Second, wantMax: 30 * time.Second},
		{name: "already expired", expiresAt: now.Add(-time.Second)},
		{name: "under a millisecond", expiresAt: now.Add(500 * time.Microsecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := extauthz.TokenHash(tc.name)
			if err := c.Set(ctx, KindExchange, issuer, h, []byte("v"), tc.expiresAt); err != nil {
				t.Fatal(err)
			}
			if err := c.Revoke(ctx, issuer, h, tc.expiresAt); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{c.key(KindExchange, issuer, h), c.key(kindRevoked, issuer, h)} {
				var pttl time.Duration
				if r := srv.Command("PTTL", key); r != "" {
					ms, err := strconv.ParseInt(strings.TrimPrefix(r, ":"), 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					pttl = time.Duration(ms) * time.Millisecond
				}
				if tc.wantMin == 0 {
					if pttl != -2*time.Millisecond {
						t.Errorf("PTTL %v, want no key", pttl)
					}
					continue
				}
				if pttl < tc.wantMin || pttl > tc.wantMax {
					t.Errorf("PTTL %v, want within [%v, %v]", pttl, tc.wantMin, tc.wantMax)
				}
			}
		})
	}
	if err := c.Set(ctx, kindRevoked, issuer, "h", []byte("1"), now.Add(time.Second)); err == nil {
		t.Error("Set wrote a revocation mark")
	}
}

// TestRedisKilledMidLoadAndRestarted: with Redis gone, no call blocks
// beyond its timeout, the breaker opens and then answers without the
// network; once Redis is back, calls succeed again, the breaker closes and
// the handlers are told to drop what notices they may have missed.
func TestRedisKilledMidLoadAndRestarted(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestCache(t, srv.Addr(), nil)
	var all atomic.Int32
	c.OnRevoke(func(r Revocation) {
		if r.All {
			all.Add(1)
		}
	})
	ctx := context.Background()
	hashes := make([]string, 64)
	for i := range hashes {
		hashes[i] = extauthz.TokenHash(string(rune('a' + i)))
		if err := c.Set(ctx, KindIntrospection, issuer, hashes[i], []byte("v"), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}

	// Load: 8 workers for 2 s; Redis is killed after 300 ms.
	const timeout = 50 * time.Millisecond
	slack := 150 * time.Millisecond // scheduling under -race on a busy machine
	var (
		mu       sync.Mutex
		slowest  time.Duration
		calls    int
		failures int
		wg       sync.WaitGroup
	)
	stopAt := time.Now().Add(2 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(stopAt); i++ {
				h := hashes[i%len(hashes)]
				start := time.Now()
				var err error
				if i%4 == 0 {
					err = c.Set(ctx, KindIntrospection, issuer, h, []byte("v"), time.Now().Add(time.Minute))
				} else {
					_, _, err = c.Get(ctx, KindIntrospection, issuer, h)
				}
				took := time.Since(start)
				if err != nil && !errors.Is(err, ErrUnavailable) {
					t.Errorf("error not wrapping ErrUnavailable: %v", err)
				}
				mu.Lock()
				slowest, calls = max(slowest, took), calls+1
				if err != nil {
					failures++
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	srv.Stop()
	eventually(t, time.Second, "breaker opens", func() bool { return c.breaker.State() == gobreaker.StateOpen })
	wg.Wait()
	t.Logf("%d calls, %d failed, slowest %v", calls, failures, slowest)
	if slowest > timeout+slack {
		t.Errorf("a call took %v, beyond its %v timeout", slowest, timeout)
	}
	if failures == 0 {
		t.Error("no call failed while Redis was down")
	}
	if got := testutil.ToFloat64(c.metrics.breaker); got != float64(gobreaker.StateOpen) && got != float64(gobreaker.StateHalfOpen) {
		t.Errorf("breaker gauge %v, want open or half-open", got)
	}
	// While open, calls fail at once without touching the network.
	if c.breaker.State() == gobreaker.StateOpen {
		start := time.Now()
		_, _, err := c.Get(ctx, KindIntrospection, issuer, hashes[0])
		if !errors.Is(err, ErrUnavailable) || time.Since(start) > 5*time.Millisecond {
			t.Errorf("open breaker: err=%v after %v", err, time.Since(start))
		}
	}

	srv.Restart()
	took := eventually(t, 10*time.Second, "calls succeed again and the breaker closes", func() bool {
		err := c.Set(ctx, KindIntrospection, issuer, hashes[0], []byte("again"), time.Now().Add(time.Minute))
		return err == nil && c.breaker.State() == gobreaker.StateClosed
	})
	t.Logf("recovered %v after the restart", took)
	if v, ok, err := c.Get(ctx, KindIntrospection, issuer, hashes[0]); string(v) != "again" || !ok || err != nil {
		t.Errorf("after restart: %q %v %v", v, ok, err)
	}
	eventually(t, 5*time.Second, "handlers told to drop everything after resubscribing", func() bool { return all.Load() > 0 })
	if testutil.ToFloat64(c.metrics.breaker) != float64(gobreaker.StateClosed) {
		t.Error("breaker gauge not back to closed")
	}
	// Notices flow again.
	var heard atomic.Bool
	c.OnRevoke(func(r Revocation) {
		if r.TokenHash == hashes[1] {
			heard.Store(true)
		}
	})
	other := newTestCache(t, srv.Addr(), nil)
	if err := other.Revoke(ctx, issuer, hashes[1], time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "a revocation after the restart reaches the replica", heard.Load)
}

func TestACLUserAndPassword(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Config: "user default off\nuser tokentailor on >s3cret-pw ~tokentailor:* &tokentailor:* +get +set +del +publish +subscribe +ping +hello +multi +exec +pttl +client|tracking +client|caching +client|setname\n"})
	ctx := context.Background()
	h := extauthz.TokenHash("acl-token")

	c := newTestCache(t, srv.Addr(), func(o *Options) { o.Username, o.Password = "tokentailor", "s3cret-pw" })
	if err := c.Set(ctx, KindIntrospection, issuer, h, []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.Get(ctx, KindIntrospection, issuer, h); !ok || err != nil || string(v) != "v" {
		t.Fatalf("with the right password: %q %v %v", v, ok, err)
	}
	var heard atomic.Bool
	c.OnRevoke(func(Revocation) { heard.Store(true) })
	other := newTestCache(t, srv.Addr(), func(o *Options) { o.Username, o.Password = "tokentailor", "s3cret-pw" })
	if err := other.Revoke(ctx, issuer, h, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "notice over the ACL-limited channel", heard.Load)

	// Wrong password: New still returns (readiness never waits for Redis),
	// calls fail fast as unavailable.
	bad, err := New(Options{Addresses: []string{srv.Addr()}, Secret: testSecret, Username: "tokentailor", Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	select {
	case <-bad.Connected():
		t.Fatal("connected with a wrong password")
	case <-time.After(300 * time.Millisecond):
	}
	if _, _, err := bad.Get(ctx, KindIntrospection, issuer, h); !errors.Is(err, ErrUnavailable) {
		t.Errorf("wrong password: err=%v, want ErrUnavailable", err)
	}
}

func TestTLS(t *testing.T) {
	redistest.Binary(t)
	files := redistest.NewTLSFiles(t)
	s := redistest.StartWith(t, redistest.Options{Config: "", TLS: files})
	ctx := context.Background()
	h := extauthz.TokenHash("tls-token")
	c := newTestCache(t, s.Addr(), func(o *Options) { o.TLS = files.Client.Clone() })
	if err := c.Set(ctx, KindExchange, issuer, h, []byte("over tls"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.Get(ctx, KindExchange, issuer, h); !ok || err != nil || string(v) != "over tls" {
		t.Fatalf("over TLS: %q %v %v", v, ok, err)
	}
	// A client that does not trust the CA never connects.
	untrusting, err := New(Options{Addresses: []string{s.Addr()}, Secret: testSecret, TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	if _, _, err := untrusting.Get(ctx, KindExchange, issuer, h); !errors.Is(err, ErrUnavailable) {
		t.Errorf("untrusted server: err=%v, want ErrUnavailable", err)
	}
}

func TestNilCacheIsDisabled(t *testing.T) {
	var c *Cache
	ctx := context.Background()
	if v, ok, err := c.Get(ctx, KindIntrospection, issuer, "h"); v != nil || ok || err != nil {
		t.Errorf("Get = %v %v %v", v, ok, err)
	}
	if err := c.Set(ctx, KindIntrospection, issuer, "h", []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Error(err)
	}
	if err := c.Revoke(ctx, issuer, "h", time.Now().Add(time.Minute)); err != nil {
		t.Error(err)
	}
	if revoked, err := c.Revoked(ctx, issuer, "h"); revoked || err != nil {
		t.Errorf("Revoked = %v %v", revoked, err)
	}
	c.OnRevoke(func(Revocation) {})()
	c.Close()
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{name: "no address", mod: func(o *Options) { o.Addresses = nil }},
		{name: "not host:port", mod: func(o *Options) { o.Addresses = []string{"redis"} }},
		{name: "standalone with two addresses", mod: func(o *Options) { o.Addresses = []string{"a:1", "b:1"} }},
		{name: "sentinel without master", mod: func(o *Options) { o.Mode = ModeSentinel }},
		{name: "unknown mode", mod: func(o *Options) { o.Mode = "ring" }},
		{name: "short secret", mod: func(o *Options) { o.Secret = []byte("short") }},
		{name: "a brace in the key prefix: a hash tag", mod: func(o *Options) { o.KeyPrefix = "a{" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Addresses: []string{"127.0.0.1:1"}, Secret: testSecret}
			tc.mod(&o)
			c, err := New(o)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("err = %v, want ErrInvalidOptions", err)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

// TestUnreachableRedisNeverBlocksNew: New returns at once and calls fail
// within their timeout while nothing listens.
func TestUnreachableRedisNeverBlocksNew(t *testing.T) {
	start := time.Now()
	c, err := New(Options{Addresses: []string{"127.0.0.1:1"}, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Get(context.Background(), KindIntrospection, issuer, "h"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("New and a Get took %v", took)
	}
}

// TestFrozenRedisCostsNoMoreThanTheTimeout: a server that keeps its
// connections but stops answering holds no call beyond Timeout, and once
// the breaker is open no call waits at all.
func TestFrozenRedisCostsNoMoreThanTheTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestCache(t, srv.Addr(), nil)
	ctx := context.Background()
	h := extauthz.TokenHash("frozen")
	if err := c.Set(ctx, KindExchange, issuer, h, []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	defer srv.Thaw()
	const timeout, slack = 50 * time.Millisecond, 150 * time.Millisecond
	var slowest time.Duration
	for i := range 10 {
		start := time.Now()
		_, _, err := c.Get(ctx, KindExchange, issuer, extauthz.TokenHash(string(rune('a'+i))))
		took := time.Since(start)
		slowest = max(slowest, took)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d against a frozen Redis: err=%v", i, err)
		}
		if i >= 3 && took > 5*time.Millisecond { // BreakerFailures = 3
			t.Errorf("call %d took %v with the breaker open", i, took)
		}
	}
	t.Logf("slowest call against a frozen Redis: %v", slowest)
	if slowest > timeout+slack {
		t.Errorf("a call took %v, beyond its %v timeout", slowest, timeout)
	}
	srv.Thaw()
	took := eventually(t, 10*time.Second, "calls succeed once Redis answers again", func() bool {
		_, ok, err := c.Get(ctx, KindExchange, issuer, h)
		return ok && err == nil && c.breaker.State() == gobreaker.StateClosed
	})
	t.Logf("recovered %v after thawing", took)
}
