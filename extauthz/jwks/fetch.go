package jwks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
)

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
