package jwks

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

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
