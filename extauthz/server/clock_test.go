package server

import (
	"sync/atomic"
	"testing"
	"time"
)

// Issue 14: a Check read the clock in the server, the verifier, its cache,
// the policy and the minter. Now the pipeline's clock is read once per
// Check for its decisions (extauthz.Request.Time); a warm Check (token
// validated and internal token minted before) reads it exactly once.
func TestWarmCheckReadsTheClockOnce(t *testing.T) {
	var reads atomic.Int64
	clock := func() time.Time { reads.Add(1); return time.Now() }
	h := newHarnessClock(t, baseConfig, nil, clock)
	hdr := map[string]string{"authorization": "Bearer " + h.token(nil)}
	if got := httpStatus(h.check("GET", "/orders/1", hdr)); got != 200 {
		t.Fatalf("first Check: %d, want 200", got)
	}
	reads.Store(0)
	if got := httpStatus(h.check("GET", "/orders/1", hdr)); got != 200 {
		t.Fatalf("warm Check: %d, want 200", got)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("a warm Check read the pipeline's clock %d times, want 1", n)
	}
}
