package jwks

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// Set is one issuer's key set. It is safe for concurrent use.
type Set struct {
	opts         Options // guarded by mu
	id           string
	issuer       string
	url          string
	discoveryURL string
	now          func() time.Time

	settings atomic.Pointer[settings]
	keys     atomic.Pointer[[]jwk]
	ready    atomic.Bool
	jwksURL  atomic.Pointer[string] // resolved through discovery
	wake     chan struct{}          // tells Run that settings or the schedule changed

	mu          sync.Mutex
	flight      *flight   // the fetch in progress, nil when none
	lastAttempt time.Time // when the last fetch started
	lastSuccess time.Time // when the last successful fetch started
	failures    int       // consecutive failed fetches; 0 after a success
}

// New returns a Set; it holds no keys until Run or Refresh fetched them.
// It refuses options without their required settings.
func New(opts Options) (*Set, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Set{opts: opts,
		id: opts.ID(), issuer: opts.Issuer, url: opts.URL, discoveryURL: opts.DiscoveryURL,
		now: opts.Now, wake: make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.settings.Store(newSettings(opts))
	return s, nil
}

// Options returns the options the Set was built with or last updated with.
func (s *Set) Options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts
}

// Update applies the settings of opts (intervals, client, logger, metrics)
// to the running Set, keeping the keys it holds; Run picks up the new
// intervals at once. opts must describe the same set (same ID), else the
// error wraps ErrOtherSet and nothing changes.
func (s *Set) Update(opts Options) error {
	if id := opts.ID(); id != s.id {
		return fmt.Errorf("%w: %s, not %s", ErrOtherSet, id, s.id)
	}
	if err := opts.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.opts = opts
	s.mu.Unlock()
	s.settings.Store(newSettings(opts))
	s.poke()
	return nil
}

// Ready reports whether one fetch has succeeded.
func (s *Set) Ready() bool { return s.ready.Load() }

// Key returns the key that verifies a token signed with alg under kid.
//
// With a kid, the key must carry that kid; without one, the key is the only
// key of the set that fits alg. The key must fit alg (RSA for RS*/PS*, the
// curve alg names for ES*, Ed25519 for EdDSA) and, when it names an alg, name
// this one. On a miss the set is fetched again when the rules of the package
// doc allow it; concurrent misses share one fetch.
//
// Errors wrap extauthz.ErrUnknownKey when a fresh set does not hold the key,
// else extauthz.ErrKeysUnavailable (the issuer could not be asked).
func (s *Set) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	key, retry, err := s.lookup(kid, alg)
	if err == nil || !retry {
		return key, err
	}
	switch ferr := s.fetch(ctx, true); {
	case ferr == nil, errors.Is(ferr, errFresh):
		// The set is fresh: what it lacks, the issuer does not publish.
		key, _, err = s.lookup(kid, alg)
		return key, err
	case errors.Is(ferr, extauthz.ErrKeysUnavailable):
		return nil, fmt.Errorf("key not in the keys held: %w", ferr)
	default:
		return nil, fmt.Errorf("%w: key not in the keys held: %w", extauthz.ErrKeysUnavailable, ferr)
	}
}

// lookup finds the key in the current set. retry says whether a refetch
// could help.
func (s *Set) lookup(kid, alg string) (key crypto.PublicKey, retry bool, err error) {
	p := s.keys.Load()
	if p == nil {
		return nil, true, fmt.Errorf("%w: no key set fetched yet", extauthz.ErrKeysUnavailable)
	}
	if kid != "" {
		found := false
		for _, k := range *p {
			if k.kid != kid {
				continue
			}
			found = true
			if (k.alg == "" || k.alg == alg) && fits(k.key, alg) == nil {
				return k.key, false, nil
			}
		}
		if found {
			return nil, false, fmt.Errorf("%w: the key with this kid does not fit alg %s", extauthz.ErrUnknownKey, alg)
		}
		return nil, true, fmt.Errorf("%w: no key with this kid", extauthz.ErrUnknownKey)
	}
	var match crypto.PublicKey
	n := 0
	for _, k := range *p {
		if (k.alg == "" || k.alg == alg) && fits(k.key, alg) == nil {
			match = k.key
			n++
		}
	}
	switch n {
	case 1:
		return match, false, nil
	case 0:
		return nil, true, fmt.Errorf("%w: no key fits alg %s", extauthz.ErrUnknownKey, alg)
	default:
		return nil, false, fmt.Errorf("%w: token has no kid and %d keys fit alg %s", extauthz.ErrUnknownKey, n, alg)
	}
}
