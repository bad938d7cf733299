package pipeline

import (
	"context"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/jwtverify"
	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/policy"
	"github.com/tokentailor/tokentailor/extauthz/response"
)

// A warm answer is what a route decided for a JWT that comes back again and
// again, kept beside the token in the credential table
// (extauthz.CredentialMemo): its validated principal, the grant and the
// minted token, with the instant until which each stage would give them
// again. The token's next Check on the same route takes them from there
// instead of walking the validation cache, the policy and the minted-token
// cache, which under load costs more in cold CPU caches than in work
// (docs/performance.md, issue 14, twelfth round).
//
// Nothing a stage would judge differently is skipped. What the stages
// derive from the principal and the route alone (signature, issuer, the
// route's issuers, scopes and claims, the grant, the token not outliving
// the incoming one) was judged when the answer was kept and cannot have
// changed: a principal, its grant and its token are never modified. What
// depends on the time is folded into until: the incoming token's expiry
// (the validation cache's own rule), min_lifetime, and the minted token's
// renewal and expiry. What depends on the request runs again on every Check:
// the route's selection, the credential's extraction, the sender constraint
// (DPoP proof, certificate), and the answer's header hygiene (AllowFor).
//
// Only JWT validations are kept so: an introspection answer can be revoked
// (a pushed revocation drops it from its cache), a JWT validation leaves
// its cache before its expiry only when its shard is flushed (full), and
// then its next Check verifies the token again (its key may have been
// withdrawn since): an answer holds only while the validation it was
// derived from is still in the cache (validated, a cache.Mark). A memo holds one route's answer; a
// token used on several routes keeps the first one's while it lasts, and
// the others take the stages' caches as before.
type warmAnswer struct {
	route     *route
	principal *extauthz.Principal // shared; its Credential is without the token
	grant     *extauthz.Grant
	tok       extauthz.Token
	// answer is the answer kept for principal and grant (response.Builder.Kept).
	answer *response.Kept
	until  time.Time
	// validated holds while the validation of principal is still in the
	// validation cache.
	validated cache.Mark
}

// goodAt reports whether a may still be given at now: before its until,
// with its validation still in the validation cache.
func (a *warmAnswer) goodAt(now time.Time) bool { return now.Before(a.until) && a.validated.Holds() }

// warmLane is how a route keeps and finds warm answers; nil on a route
// whose answer is not kept so (not minted, or not from a JWT).
type warmLane struct {
	policy   *policy.Route
	minter   *mint.Minter
	verifier *jwtverify.Verifier
}

// newWarmLane returns the warm lane of route rt (pr in the policy), nil
// when its answers are not kept: only minting routes that take the
// pipeline's credential and verify JWTs with the pipeline's verifier.
func newWarmLane(pr *policy.Route, rt *route, st *stages) *warmLane {
	m, _ := st.mint.(*mint.Minter)
	v, _ := st.jwt.(*jwtverify.Verifier)
	if m == nil || v == nil || rt.jwt == nil || !rt.keepAnswer || rt.withRequest || rt.credential != nil ||
		pr.Grant().Mode != extauthz.ModeMint {
		return nil
	}
	return &warmLane{policy: pr, minter: m, verifier: v}
}

// find returns the warm answer rt keeps for cred, if it is still good at
// now, and counts the validation cache's hit that authenticating it would
// have counted (the minted-token cache's is counted by minted, once the
// request passed the checks before the minter). Without one, it returns
// the mark of cred's validation for keep, taken before the stages look
// it up; the zero Mark when keep would keep nothing.
func (w *warmLane) find(ctx context.Context, rt *route, cred extauthz.Credential, now time.Time) (*warmAnswer, cache.Mark) {
	if w == nil || cred.Memo == nil || cred.Kind != extauthz.KindJWT {
		return nil, cache.Mark{}
	}
	if a, _ := cred.Memo.Load().(*warmAnswer); a != nil && a.route == rt && a.goodAt(now) {
		w.verifier.NoteHit(ctx)
		return a, cache.Mark{}
	}
	return nil, w.verifier.Mark(cred)
}

// minted counts the minted-token cache's hit of a warm answer's Check that
// reached the minter's turn: a Check denied before it (the binding check)
// counts none, as with the stages.
func (w *warmLane) minted(ctx context.Context) { w.minter.NoteHit(ctx) }

// keep keeps what rt just decided for cred beside the token, with the
// answer that answers kept for it, when the stages keep it too: the
// principal came from the validation cache (not fresh), which still holds
// it (validated, find's mark, which holds only for a credential find
// deemed fit to keep one), and the minter keeps tok for it. A memo that
// holds another route's answer still good at now is left alone.
func (w *warmLane) keep(rt *route, answers *response.Builder, cred extauthz.Credential, p *extauthz.Principal, g *extauthz.Grant, tok extauthz.Token, now time.Time, validated cache.Mark) {
	if w == nil || p.Fresh || !validated.Holds() {
		return
	}
	if a, _ := cred.Memo.Load().(*warmAnswer); a != nil && a.route != rt && a.goodAt(now) {
		return
	}
	kept, until, ok := w.minter.Kept(p, g)
	if !ok || kept.Value != tok.Value {
		return
	}
	if p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	if h := w.policy.HoldsUntil(p); !h.IsZero() && h.Before(until) {
		until = h
	}
	if !now.Before(until) {
		return
	}
	// The memo belongs to the token: the principal it keeps holds neither
	// the token (a part of this request's header) nor the memo.
	shared := *p
	shared.Credential.Raw, shared.Credential.Memo = "", nil
	answer := answers.Kept(p, g)
	cred.Memo.Store(&warmAnswer{route: rt, principal: &shared, grant: g, tok: tok, answer: answer, until: until, validated: validated})
}
