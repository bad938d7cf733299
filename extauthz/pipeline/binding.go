package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/dpop"
	"github.com/tokentailor/tokentailor/extauthz/mtls"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// dpopHeader is the request header of DPoP proofs (RFC 9449 §4.1), consumed
// here and never passed to the upstream.
const dpopHeader = "dpop"

// binding checks that a request holds what its token is bound to: the
// client certificate of an RFC 8705 certificate-bound token (every route),
// and for routes with a sender_constraint the DPoP proof of RFC 9449.
type binding struct {
	mode   dpop.Mode
	origin string
	dpop   *dpop.Verifier // nil when mode is off
}

// check runs after the principal is established and before the route
// authorizes it, on every request (proofs are per request, never cached).
func (b *binding) check(ctx context.Context, r *extauthz.Request, cred extauthz.Credential, p *extauthz.Principal) error {
	var (
		jkt   string
		bound bool
	)
	// An Unbound principal's claims are known to hold no cnf: a warm Check
	// need not touch them (≈ 0.2–0.7 µs under load, the claims map being
	// cold in the CPU's caches).
	if !p.Unbound {
		if err := mtls.Check(p.Claims, r.SourceCertificate); err != nil {
			return err
		}
		var err error
		if jkt, bound, err = dpop.JKT(p.Claims); err != nil && b.mode != dpop.ModeOff {
			return err
		}
	}
	verify, err := dpop.Decide(b.mode, cred.Scheme, bound)
	if err != nil || !verify {
		return err
	}
	_, err = b.dpop.Verify(ctx, dpop.Request{
		Proofs:      proofs(r),
		Method:      r.Method,
		URI:         dpop.TargetURI(b.origin, r.Scheme, r.Host, r.RawPath),
		AccessToken: cred.Raw,
		JKT:         jkt,
	})
	return err
}

// proofs returns the request's DPoP header values: none, one, or (when the
// raw header list counted several) as many as were sent, so Verify refuses
// them (RFC 9449 §4.3 check 1). Envoy's merged map joins repeats with ",",
// which Verify refuses as malformed.
func proofs(r *extauthz.Request) []string {
	v, ok := r.Headers[dpopHeader]
	if !ok {
		return nil
	}
	n := max(r.HeaderCount[dpopHeader], 1)
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// buildDPoP makes the DPoP verifier of cfg, nil when no route uses DPoP.
// replay is shared across reloads (Env.DPoPReplay) so a reload does not
// forget which proofs were seen; nil makes a private one. With a shared
// cache, proofs are recorded in Redis behind it, so a proof replayed to
// another replica is refused too (dpop.shared_replay_down says what happens
// when Redis cannot record one).
func buildDPoP(cfg *config.Config, replay dpop.ReplayCache, shared *sharedcache.Cache, now func() time.Time) (*dpop.Verifier, error) {
	if !cfg.UsesDPoP() {
		return nil, nil
	}
	d := cfg.DPoP
	if replay == nil {
		replay = dpop.NewMemoryReplay(d.ReplayEntries, now)
	}
	if shared != nil {
		replay = &sharedcache.Replay{Cache: shared, Local: replay, FallBackLocal: d.SharedReplayDown == config.DPoPSharedReplayLocal}
	}
	var nonces *dpop.Nonces
	if d.NonceSecret != nil {
		key, err := cfg.ReadSecret(d.NonceSecret)
		if err != nil {
			return nil, fmt.Errorf("dpop.nonce_secret: %w", err)
		}
		if nonces, err = dpop.NewNonces([][]byte{key}, d.NonceLifetime.Duration, now); err != nil {
			return nil, fmt.Errorf("dpop.nonce_secret: %w", err)
		}
	}
	v, err := dpop.New(dpop.Options{
		Algorithms: d.Algorithms, MaxAge: d.MaxAge.Duration, Leeway: d.Leeway.Duration,
		Replay: replay, Nonces: nonces, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("dpop: %w", err)
	}
	return v, nil
}
