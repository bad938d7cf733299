// Package jwks keeps one issuer's JSON Web Key Set: fetched at start (from a
// configured URL or found through discovery), refreshed periodically,
// refetched when a token names an unknown kid — at most once per
// MinRefetchInterval however many unknown kids arrive — and kept as it was
// when the issuer cannot be reached.
//
// The set is parsed here with encoding/json and the crypto packages rather
// than with a JOSE library: the rules that matter (skip `use: enc` keys and
// unknown key types one by one instead of failing the whole set, refuse RSA
// keys under 2048 bits, check EC points are on their curve, match the key
// type to the token's alg) are each a few lines, and a general library would
// bring its own alg handling we would then have to keep from being used.
package jwks

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// MaxBytes bounds the size of a JWKS document.
const MaxBytes = 1 << 20

// Options configures a Set. RefreshInterval, MinRefetchInterval, Timeout and
// Client are required: the values come already defaulted from config.
type Options struct {
	// Issuer is the issuer identifier; used for discovery, logs and metrics.
	Issuer string
	// URL is the JWKS URL. When empty, it is found through discovery.
	URL string
	// DiscoveryURL is the metadata URL; when empty as well as URL, the
	// issuer's OIDC and then RFC 8414 well-known URLs are tried.
	DiscoveryURL string
	// RefreshInterval is how often Run refetches the set.
	RefreshInterval time.Duration
	// MinRefetchInterval is the least time between two fetches caused by
	// unknown kids. It is what keeps a flood of tokens with random kids from
	// turning into a flood of calls to the issuer.
	MinRefetchInterval time.Duration
	// Timeout bounds one fetch, discovery included.
	Timeout time.Duration
	// Client makes the HTTP calls.
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives fetch failures and skipped keys (default: discard).
	Logger *slog.Logger
	// Metrics counts calls to the issuer (may be nil).
	Metrics *metrics.Metrics
}

// Set is one issuer's key set. It is safe for concurrent use.
type Set struct {
	opts Options

	keys    atomic.Pointer[[]jwk]
	ready   atomic.Bool
	jwksURL atomic.Pointer[string] // resolved through discovery

	mu          sync.Mutex
	lastAttempt time.Time // last fetch started, for the refetch rate limit

	group singleflight.Group
}

// errRateLimited: a refetch was skipped because one happened too recently.
var errRateLimited = errors.New("refetch rate limited")

// New returns a Set; it holds no keys until Run or Refresh fetched them.
// It refuses options without their required settings.
func New(opts Options) (*Set, error) {
	switch {
	case opts.RefreshInterval <= 0:
		return nil, errors.New("jwks: RefreshInterval must be positive")
	case opts.MinRefetchInterval <= 0:
		return nil, errors.New("jwks: MinRefetchInterval must be positive")
	case opts.Timeout <= 0:
		return nil, errors.New("jwks: Timeout must be positive")
	case opts.Client == nil:
		return nil, errors.New("jwks: Client is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("issuer", opts.Issuer)
	return &Set{opts: opts}, nil
}

// Options returns the options the Set was built with.
func (s *Set) Options() Options { return s.opts }

// Ready reports whether one fetch has succeeded.
func (s *Set) Ready() bool { return s.ready.Load() }

// Run fetches the set at once, then every RefreshInterval until ctx ends.
// Until the first fetch succeeds it retries every MinRefetchInterval (capped
// by RefreshInterval), so readiness does not wait a whole refresh period.
func (s *Set) Run(ctx context.Context) {
	for {
		wait := s.opts.RefreshInterval
		if err := s.Refresh(ctx); err != nil && !s.Ready() {
			wait = min(s.opts.MinRefetchInterval, s.opts.RefreshInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Refresh fetches the set now. On failure the keys held so far are kept and
// the error wraps extauthz.ErrKeysUnavailable. Concurrent calls share one fetch.
func (s *Set) Refresh(ctx context.Context) error {
	return s.shared(ctx, "refresh", false)
}

// Key returns the key that verifies a token signed with alg under kid.
//
// With a kid, the key must carry that kid; without one, the key is the only
// key of the set that fits alg. The key must fit alg (RSA for RS*/PS*, the
// curve alg names for ES*, Ed25519 for EdDSA) and, when it names an alg, name
// this one. On a miss the set is refetched, at most once per
// MinRefetchInterval; concurrent misses share one fetch.
//
// Errors wrap extauthz.ErrKeysUnavailable when no fetch ever succeeded, else
// extauthz.ErrUnknownKey.
func (s *Set) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	key, retry, err := s.lookup(kid, alg)
	if err == nil || !retry {
		return key, err
	}
	if ferr := s.shared(ctx, "refetch", true); ferr != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, ctx.Err())
	}
	key, _, err = s.lookup(kid, alg)
	return key, err
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

// shared runs one fetch for all concurrent callers of the same kind. With
// limited, it is skipped when the last fetch started less than
// MinRefetchInterval ago. The fetch itself is not cancelled when the caller
// that started it goes away; it is bounded by the client's timeout.
func (s *Set) shared(ctx context.Context, kind string, limited bool) error {
	ch := s.group.DoChan(kind, func() (any, error) {
		now := s.opts.Now()
		s.mu.Lock()
		if limited && !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.opts.MinRefetchInterval {
			s.mu.Unlock()
			return nil, errRateLimited
		}
		s.lastAttempt = now
		s.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
		defer cancel()
		return nil, s.fetch(fctx)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Set) fetch(ctx context.Context) error {
	url, err := s.resolve(ctx)
	if err == nil {
		err = s.fetchFrom(ctx, url)
		s.opts.Metrics.IssuerCall(s.opts.Issuer, "jwks", err)
	}
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "jwks fetch failed; keeping the keys held", "error", err, "keys_held", s.Ready())
		return fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, err)
	}
	return nil
}

// resolve returns the JWKS URL, from the options or through discovery (once
// successful, the discovered URL is reused).
func (s *Set) resolve(ctx context.Context) (string, error) {
	if s.opts.URL != "" {
		return s.opts.URL, nil
	}
	if p := s.jwksURL.Load(); p != nil {
		return *p, nil
	}
	md, err := discovery.FetchIssuer(ctx, s.opts.Client, s.opts.Issuer, s.opts.DiscoveryURL)
	s.opts.Metrics.IssuerCall(s.opts.Issuer, "discovery", err)
	if err != nil {
		return "", err
	}
	if md.JWKSURI == "" {
		return "", errors.New("metadata has no jwks_uri")
	}
	s.jwksURL.Store(&md.JWKSURI)
	return md.JWKSURI, nil
}

func (s *Set) fetchFrom(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBytes))
		return fmt.Errorf("jwks status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBytes+1))
	if err != nil {
		return err
	}
	if len(body) > MaxBytes {
		return fmt.Errorf("%w: larger than %d bytes", ErrInvalidSet, MaxBytes)
	}
	keys, skips, err := parseSet(body)
	if err != nil {
		return err
	}
	for _, sk := range skips {
		s.opts.Logger.WarnContext(ctx, "jwks key skipped", "index", sk.index, "reason", sk.reason)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no usable verification key", ErrInvalidSet)
	}
	s.keys.Store(&keys)
	s.ready.Store(true)
	s.opts.Logger.DebugContext(ctx, "jwks fetched", "keys", len(keys))
	return nil
}
