package credential

import (
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync/atomic"

	"github.com/tokentailor/tokentailor/extauthz"
)

// hashes remembers the SHA-256 (extauthz.TokenHash) of tokens that came
// back, so that the Check of a token whose validation is cached does not
// hash it again: a warm Check's largest cost of its own (≈ 0.4 µs for a
// 400-byte JWT with SHA-NI, more for larger tokens and without it).
//
// A token is found by comparing it whole with the remembered one, so two
// tokens never share a sum, whatever an attacker sends: the table is no
// hash table of sums but a memory of exact strings. It is bounded: hashSlots
// entries of at most maxRememberedToken bytes each, two per set, picked by
// a hash with a per-table random seed. Which set a token lands in cannot be
// steered nor observed, so the comparison's timing tells a client nothing
// about another client's token.
//
// Keeping raw tokens is what caches must not do (extauthz/cache keys are
// hashes): this table is the one exception, because it is the hash's own
// memory. It is bounded in entries and bytes, holds only tokens that were
// validated and came back, and nothing of it leaves the process or reaches
// a log; a Check holds its token in memory anyway, the table holds at most
// hashSlots recent ones longer.
//
// Only tokens an authenticator already knew are remembered (Remember, after
// a cached validation; a Txn-Token, verified anew on every Check, never
// is): a stream of new or garbage tokens costs the table nothing, not even
// a store. More tokens coming back than it holds replace its entries only
// now and then (admitOneIn), so that most of it keeps serving. A remembered token passed Extract's checks of
// its characters before, and its Kind is kept too: found again, it is
// neither scanned nor hashed.
type hashes struct {
	seed  maphash.Seed
	slots [hashSlots]atomic.Pointer[hashedToken]
}

// hashedToken is a remembered token, its TokenHash and its Kind, never
// modified, and the memo the request path keeps beside it
// (extauthz.CredentialMemo), which goes when another token takes the slot.
type hashedToken struct {
	token, sum string
	kind       extauthz.CredentialKind
	memo       extauthz.CredentialMemo
}

const (
	// hashSlots is the number of tokens remembered, in sets of two.
	hashSlots = 1024
	// maxRememberedToken bounds the size of a remembered token, and so the
	// table's tokens at 4 MiB; longer tokens are hashed on every Check.
	// Beside each token its memo keeps one warm answer (extauthz/pipeline):
	// a principal shared with the validation cache, a grant and a minted
	// token, so hashSlots of those at the most.
	maxRememberedToken = 4096
	// admitOneIn: a token whose set is full replaces an entry once in this
	// many Remember calls.
	admitOneIn = 16
)

func newHashes() *hashes { return &hashes{seed: maphash.MakeSeed()} }

// set returns the index of token's first slot; the second is the next one.
func (h *hashes) set(token string) int {
	return int(maphash.String(h.seed, token)%(hashSlots/2)) * 2
}

// find returns the remembered entry of token, nil when there is none (or
// no table).
func (h *hashes) find(token string) *hashedToken {
	if h == nil || len(token) > maxRememberedToken {
		return nil
	}
	i := h.set(token)
	for j := i; j < i+2; j++ {
		if e := h.slots[j].Load(); e != nil && e.token == token {
			return e
		}
	}
	return nil
}

// remember keeps c's token, sum and kind in an empty slot of its set. When
// both are taken it replaces one only now and then (one call in
// admitOneIn): with more tokens coming back than the table holds, a
// rotation through them would otherwise copy a token into the table on
// nearly every Check and keep none of them long enough to be found. c's sum
// is checked before it is kept, so that no caller can pair a token with
// another's hash.
func (h *hashes) remember(c extauthz.Credential) {
	if h == nil || len(c.Raw) > maxRememberedToken {
		return
	}
	i := h.set(c.Raw)
	switch {
	case h.slots[i].Load() == nil:
	case h.slots[i+1].Load() == nil:
		i++
	case rand.Uint32()%admitOneIn != 0:
		return
	default:
		i += int(rand.Uint32() & 1)
	}
	if c.CachedTokenHash != extauthz.TokenHash(c.Raw) {
		return
	}
	// A copy: the token is part of the request's header value, which must
	// not be kept alive by the table.
	h.slots[i].Store(&hashedToken{token: strings.Clone(c.Raw), sum: c.CachedTokenHash, kind: c.Kind})
}
