package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
)

// Defaults for ResolverOptions fields left zero.
const (
	DefaultMinRetryBackoff = 250 * time.Millisecond
	DefaultMaxRetryBackoff = 5 * time.Second
)

// ErrNoEndpoint: the issuer's metadata does not name the endpoint asked for.
// Errors carrying it also wrap extauthz.ErrIssuerUnavailable: the request is
// not at fault, the configuration is (set the endpoint explicitly).
var ErrNoEndpoint = errors.New("metadata names no such endpoint")

// ResolverOptions configures a Resolver.
type ResolverOptions struct {
	// Issuer is the issuer identifier; the document must name it exactly.
	Issuer string
	// URL is the metadata URL; empty means the issuer's OIDC and then RFC
	// 8414 well-known URLs (see FetchIssuer).
	URL string
	// Client makes the calls (nil: http.DefaultClient with DefaultTimeout).
	Client *http.Client
	// MinRetryBackoff is the wait after a first failed fetch; it doubles with
	// each further failure up to MaxRetryBackoff (defaults 250ms and 5s).
	MinRetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between two failed fetches.
	MaxRetryBackoff time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives fetch failures (default: discard).
	Logger *slog.Logger
	// Metrics counts calls to the issuer (may be nil).
	Metrics *metrics.Metrics
}

// Resolver finds an issuer's metadata without holding up start-up: Build
// creates it, Run fetches in the background until the document is found
// (retrying with backoff), and callers ask it for endpoints per request. Until
// the document is found they get an error wrapping
// extauthz.ErrIssuerUnavailable (503), and a request may itself trigger the
// next attempt as soon as the backoff allows, so the endpoints are there the
// moment the issuer answers. Once found, the document is kept: endpoints are
// not expected to move while the issuer keeps its identifier. Ready reports
// whether it was found, for readiness. It is safe for concurrent use.
type Resolver struct {
	opts ResolverOptions

	mu          sync.Mutex
	md          *Metadata     // nil until found
	flight      chan struct{} // closed when the fetch in progress ends; nil when none
	lastErr     error         // outcome of the last failed fetch
	lastAttempt time.Time
	failures    int
	wake        chan struct{}
}

// NewResolver returns a Resolver that has not fetched anything yet.
func NewResolver(opts ResolverOptions) *Resolver {
	if opts.MinRetryBackoff <= 0 {
		opts.MinRetryBackoff = DefaultMinRetryBackoff
	}
	if opts.MaxRetryBackoff <= 0 {
		opts.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	opts.MinRetryBackoff = min(opts.MinRetryBackoff, opts.MaxRetryBackoff)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("issuer", opts.Issuer)
	return &Resolver{opts: opts, wake: make(chan struct{}, 1)}
}

// Ready reports whether the metadata was found.
func (r *Resolver) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.md != nil
}

// SetClient makes client the one of every later fetch (a reload that keeps
// the issuer but changes its http_timeout); the document found so far and
// the backoff state are kept.
func (r *Resolver) SetClient(client *http.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opts.Client = client
}

// Run fetches the metadata until it is found or ctx ends, waiting the
// backoff between failed attempts; then it returns.
func (r *Resolver) Run(ctx context.Context) {
	for {
		_, err := r.get(ctx, false)
		if err == nil || ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		wait := r.lastAttempt.Add(r.backoffLocked()).Sub(r.opts.Now())
		r.mu.Unlock()
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake: // a caller's fetch ended: decide again
			t.Stop()
		case <-t.C:
		}
	}
}

// Metadata returns the document once found. Until then it joins the fetch in
// flight, or starts one when the backoff since the last failure has passed,
// else fails at once; errors wrap extauthz.ErrIssuerUnavailable.
func (r *Resolver) Metadata(ctx context.Context) (Metadata, error) {
	return r.get(ctx, true)
}

// IntrospectionEndpoint returns the document's introspection_endpoint.
// Errors wrap extauthz.ErrIssuerUnavailable, and ErrNoEndpoint when the
// document names none.
func (r *Resolver) IntrospectionEndpoint(ctx context.Context) (string, error) {
	return r.endpoint(ctx, "introspection_endpoint", func(md Metadata) string { return md.IntrospectionEndpoint })
}

// TokenEndpoint returns the document's token_endpoint. Errors wrap
// extauthz.ErrIssuerUnavailable, and ErrNoEndpoint when the document names
// none.
func (r *Resolver) TokenEndpoint(ctx context.Context) (string, error) {
	return r.endpoint(ctx, "token_endpoint", func(md Metadata) string { return md.TokenEndpoint })
}

func (r *Resolver) endpoint(ctx context.Context, name string, pick func(Metadata) string) (string, error) {
	md, err := r.Metadata(ctx)
	if err != nil {
		return "", err
	}
	if u := pick(md); u != "" {
		return u, nil
	}
	return "", fmt.Errorf("%w: %w: %s", extauthz.ErrIssuerUnavailable, ErrNoEndpoint, name)
}

// backoffLocked is the wait after the failures so far; r.mu must be held.
func (r *Resolver) backoffLocked() time.Duration {
	d := r.opts.MinRetryBackoff
	for i := 1; i < r.failures && d < r.opts.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxRetryBackoff)
}

// get returns the document, joining or starting a fetch as needed. With
// gated, a fetch starts only once the backoff after the last failure passed.
func (r *Resolver) get(ctx context.Context, gated bool) (Metadata, error) {
	r.mu.Lock()
	if r.md != nil {
		md := *r.md
		r.mu.Unlock()
		return md, nil
	}
	f := r.flight
	if f == nil {
		now := r.opts.Now()
		if gated && r.failures > 0 && now.Sub(r.lastAttempt) < r.backoffLocked() {
			err := r.lastErr
			r.mu.Unlock()
			return Metadata{}, fmt.Errorf("%w: metadata not found yet (retrying): %w", extauthz.ErrIssuerUnavailable, err)
		}
		f = make(chan struct{})
		r.flight, r.lastAttempt = f, now
		go r.fetch(context.WithoutCancel(ctx), r.opts.Client, f)
	}
	r.mu.Unlock()
	select {
	case <-f:
	case <-ctx.Done():
		return Metadata{}, fmt.Errorf("%w: waiting for metadata: %w", extauthz.ErrIssuerUnavailable, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.md != nil {
		return *r.md, nil
	}
	return Metadata{}, r.lastErr
}

// fetch runs one attempt and records its outcome. FetchIssuer bounds it
// with the client's timeout and DefaultTimeout.
func (r *Resolver) fetch(ctx context.Context, client *http.Client, done chan struct{}) {
	md, err := FetchIssuer(ctx, client, r.opts.Issuer, r.opts.URL)
	r.opts.Metrics.IssuerCall(r.opts.Issuer, "discovery", err)
	r.mu.Lock()
	if err == nil {
		r.md, r.failures, r.lastErr = &md, 0, nil
	} else {
		r.failures++
		r.lastErr = err
	}
	r.flight = nil
	r.mu.Unlock()
	if err != nil {
		r.opts.Logger.WarnContext(ctx, "discovery failed; retrying", "error", err)
	}
	close(done)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
