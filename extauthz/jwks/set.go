// Package jwks keeps one issuer's JSON Web Key Set: fetched at start (from a
// configured URL or found through discovery), refreshed periodically, kept
// as it was when the issuer cannot be reached, and fetched again on demand
// when a token names a kid the set does not hold.
//
// When may a fetch start? One rule, decided under one lock, for the periodic
// refresh and for fetches asked for by tokens alike:
//
//   - after a successful fetch, the next on-demand fetch waits
//     MinRefetchInterval (a few seconds): a storm of tokens with unknown kids
//     costs the issuer at most one fetch per interval, and a key the issuer
//     has just published is fetched at the first token that names it unless
//     a fetch already happened within the interval;
//   - after a failed fetch, the next one waits a short backoff (from
//     MinRetryBackoff, doubling, capped at MinRefetchInterval): the periodic
//     loop retries on that schedule and a token may trigger the retry as
//     soon as the backoff allows, so recovery follows the issuer's return at
//     once;
//   - concurrent callers share the fetch in flight.
//
// What a token with a kid the set does not hold gets:
//
//   - the key, when a fetch (its own or one in flight) brings it;
//   - extauthz.ErrUnknownKey (401) only when a fresh set was obtained — a
//     fetch succeeded now or within MinRefetchInterval — and the kid is
//     really not in it;
//   - extauthz.ErrKeysUnavailable (503, not the token's fault) when the
//     issuer could not be asked: never fetched, the last fetch failed, or
//     the request's own deadline ended first.
//
// A Set's identity is its issuer and where its keys come from (Options.ID);
// its timing, client, logger and metrics are settings that Update changes
// on a running Set, so a reload that keeps the issuer keeps the keys.
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

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

const (
	// DefaultMinRetryBackoff is the first wait after a failed fetch when
	// Options.MinRetryBackoff is zero. It is not a setting of config but
	// the retry schedule's shape, capped by MinRefetchInterval.
	DefaultMinRetryBackoff = 250 * time.Millisecond
	// MaxBytes bounds the size of a JWKS document.
	MaxBytes = 1 << 20
)

// ErrOtherSet: Update was given the options of another key set (another
// issuer, JWKS URL or discovery URL).
var ErrOtherSet = errors.New("jwks: options of another key set")

// Options configures a Set. Issuer, URL and DiscoveryURL are its identity
// (see ID); the other fields are settings that Update may change.
// RefreshInterval, MinRefetchInterval and a Client with a Timeout are
// required: the values come already defaulted from config (the Client's
// Timeout is the issuer's http_timeout).
type Options struct {
	// Issuer is the issuer identifier; used for discovery, logs and metrics.
	Issuer string
	// URL is the JWKS URL. When empty, it is found through discovery.
	URL string
	// DiscoveryURL is the metadata URL; when empty as well as URL, the
	// issuer's OIDC and then RFC 8414 well-known URLs are tried.
	DiscoveryURL string
	// RefreshInterval is how often Run refetches the set after a successful
	// fetch.
	RefreshInterval time.Duration
	// MinRefetchInterval is the least time between a successful fetch and
	// the next fetch a token with an unknown kid may cause.
	// It bounds what a flood of tokens with random kids costs the issuer
	// (one fetch per interval) and how long a newly published key can be
	// refused after a fetch that just missed it. It also caps the backoff
	// after failed fetches.
	MinRefetchInterval time.Duration
	// MinRetryBackoff is the wait after a first failed fetch; it doubles with
	// each further failure up to MinRefetchInterval (default 250ms).
	MinRetryBackoff time.Duration
	// Client makes the HTTP calls; its Timeout bounds each fetch, discovery
	// included.
	Client *http.Client
	// Now is the clock (default time.Now). Update does not change it.
	Now func() time.Time
	// Logger receives fetch failures and skipped keys (default: discard).
	Logger *slog.Logger
	// Metrics counts calls to the issuer (may be nil).
	Metrics *metrics.Metrics
}

// ID names the key set o describes: its issuer and where its keys come from.
// Two Options with the same ID describe the same keys; whatever else differs
// between them is a setting Update applies to a running Set, keeping the
// keys it holds. Use it to key a registry of running sets.
func (o Options) ID() string {
	return fmt.Sprintf("%q %q %q", o.Issuer, o.URL, o.DiscoveryURL)
}

// settings are the parts of Options that Update may change.
type settings struct {
	refresh    time.Duration
	minRefetch time.Duration
	minBackoff time.Duration
	client     *http.Client
	logger     *slog.Logger
	metrics    *metrics.Metrics
}

// validate refuses options without their required settings.
func (o Options) validate() error {
	switch {
	case o.RefreshInterval <= 0:
		return errors.New("jwks: RefreshInterval must be positive")
	case o.MinRefetchInterval <= 0:
		return errors.New("jwks: MinRefetchInterval must be positive")
	case o.Client == nil || o.Client.Timeout <= 0:
		return errors.New("jwks: a Client with a Timeout is required")
	}
	return nil
}

func newSettings(o Options) *settings {
	st := &settings{
		refresh: o.RefreshInterval, minRefetch: o.MinRefetchInterval, minBackoff: o.MinRetryBackoff,
		client: o.Client, logger: o.Logger, metrics: o.Metrics,
	}
	if st.minBackoff <= 0 {
		st.minBackoff = DefaultMinRetryBackoff
	}
	st.minBackoff = min(st.minBackoff, st.minRefetch)
	if st.logger == nil {
		st.logger = slog.New(slog.DiscardHandler)
	}
	st.logger = st.logger.With("issuer", o.Issuer)
	return st
}

// backoff is the wait after n consecutive failed fetches (n ≥ 1).
func (st *settings) backoff(n int) time.Duration {
	d := st.minBackoff
	for i := 1; i < n && d < st.minRefetch; i++ {
		d *= 2
	}
	return min(d, st.minRefetch)
}

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

// flight is one fetch that concurrent callers wait for.
type flight struct {
	done chan struct{}
	err  error
}

// Why an on-demand fetch did not start.
var (
	// errFresh: a fetch succeeded less than MinRefetchInterval ago.
	errFresh = errors.New("key set fetched moments ago")
	// errBackoff: the last fetch failed and the retry backoff has not passed.
	errBackoff = errors.New("issuer unreachable at the last fetch; retrying after a backoff")
)

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

// Run fetches the set at once, then every RefreshInterval until ctx ends.
// After a failed fetch it retries on the backoff schedule (see the package
// doc), whether or not keys are held, so neither readiness nor a rotation
// missed during an outage waits a whole refresh period.
func (s *Set) Run(ctx context.Context) {
	for {
		wait := s.tick(ctx)
		if ctx.Err() != nil {
			return
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// tick waits for the fetch in flight, or starts the periodic one when it is
// due and waits for it, and returns 0; else it returns the time until the
// next one is due. Due and start are decided under one lock with the
// on-demand rule, so Run never adds a fetch the schedule does not allow.
func (s *Set) tick(ctx context.Context) time.Duration {
	st := s.settings.Load()
	s.mu.Lock()
	f := s.flight
	if f == nil {
		now := s.now()
		var due time.Time
		switch {
		case s.lastAttempt.IsZero():
		case s.failures > 0:
			due = s.lastAttempt.Add(st.backoff(s.failures))
		default:
			due = s.lastSuccess.Add(st.refresh)
		}
		if wait := due.Sub(now); wait > 0 {
			s.mu.Unlock()
			return wait
		}
		f = s.startLocked(ctx, st, now)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
	}
	return 0
}

// Refresh fetches the set now, or waits for the fetch in flight. On failure
// the keys held so far are kept and the error wraps
// extauthz.ErrKeysUnavailable.
func (s *Set) Refresh(ctx context.Context) error {
	return s.fetch(ctx, false)
}

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

// fetch joins the fetch in flight or starts one. With onDemand, it starts
// one only when the rules of the package doc allow it, else returns
// errFresh or errBackoff (wrapped in extauthz.ErrKeysUnavailable). The
// fetch itself is not cancelled when the caller that started it goes away;
// it is bounded by the client's timeout.
func (s *Set) fetch(ctx context.Context, onDemand bool) error {
	st := s.settings.Load()
	s.mu.Lock()
	f := s.flight
	if f == nil {
		now := s.now()
		if onDemand && !s.lastAttempt.IsZero() {
			if s.failures == 0 && now.Sub(s.lastAttempt) < st.minRefetch {
				s.mu.Unlock()
				return errFresh
			}
			if s.failures > 0 && now.Sub(s.lastAttempt) < st.backoff(s.failures) {
				s.mu.Unlock()
				return fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, errBackoff)
			}
		}
		f = s.startLocked(ctx, st, now)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the key set: %w", extauthz.ErrKeysUnavailable, ctx.Err())
	}
}

// startLocked starts a fetch in the background; s.mu must be held.
func (s *Set) startLocked(ctx context.Context, st *settings, now time.Time) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight, s.lastAttempt = f, now
	go s.fly(context.WithoutCancel(ctx), f, st, now)
	return f
}

// fly runs one fetch and records its outcome.
func (s *Set) fly(ctx context.Context, f *flight, st *settings, started time.Time) {
	ctx, cancel := context.WithTimeout(ctx, st.client.Timeout)
	err := s.get(ctx, st)
	cancel()
	s.mu.Lock()
	if err == nil {
		s.failures, s.lastSuccess = 0, started
	} else {
		s.failures++
	}
	s.flight, f.err = nil, err
	s.mu.Unlock()
	close(f.done)
	s.poke() // the schedule moved: Run decides again
}

// poke wakes Run without blocking.
func (s *Set) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Set) get(ctx context.Context, st *settings) error {
	url, err := s.resolve(ctx, st)
	if err == nil {
		err = s.fetchFrom(ctx, st, url)
		st.metrics.IssuerCall(s.issuer, "jwks", err)
	}
	if err != nil {
		st.logger.WarnContext(ctx, "jwks fetch failed; keeping the keys held", "error", err, "keys_held", s.Ready())
		return fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, err)
	}
	return nil
}

func (s *Set) resolve(ctx context.Context, st *settings) (string, error) {
	if s.url != "" {
		return s.url, nil
	}
	if p := s.jwksURL.Load(); p != nil {
		return *p, nil
	}
	md, err := discovery.FetchIssuer(ctx, st.client, s.issuer, s.discoveryURL)
	st.metrics.IssuerCall(s.issuer, "discovery", err)
	if err != nil {
		return "", err
	}
	if md.JWKSURI == "" {
		return "", errors.New("metadata has no jwks_uri")
	}
	s.jwksURL.Store(&md.JWKSURI)
	return md.JWKSURI, nil
}

func (s *Set) fetchFrom(ctx context.Context, st *settings, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := st.client.Do(req)
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
		st.logger.WarnContext(ctx, "jwks key skipped", "index", sk.index, "reason", sk.reason)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no usable verification key", ErrInvalidSet)
	}
	s.keys.Store(&keys)
	s.ready.Store(true)
	st.logger.DebugContext(ctx, "jwks fetched", "keys", len(keys))
	return nil
}
