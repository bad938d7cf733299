// Package discovery fetches an authorization server's metadata: OpenID
// Connect Discovery (/.well-known/openid-configuration) or RFC 8414
// (/.well-known/oauth-authorization-server).
//
// The document is untrusted input: its size is bounded, the call has a
// deadline, and FetchIssuer checks that the `issuer` it names is exactly the
// issuer it was fetched for (RFC 8414 §3.3, OIDC Discovery §4.3), so a
// server cannot pass itself off as another issuer.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
)

// MaxBytes bounds the size of a metadata document.
const MaxBytes = 256 << 10

// ErrIssuerMismatch: the document's issuer is not the one expected. Errors
// carrying it also wrap extauthz.ErrIssuerUnavailable.
var ErrIssuerMismatch = errors.New("metadata issuer mismatch")

// ErrInvalidMetadata: the document is not usable metadata. Errors carrying
// it also wrap extauthz.ErrIssuerUnavailable.
var ErrInvalidMetadata = errors.New("invalid metadata")

// Metadata holds the members of an authorization server's metadata that
// tokentailor uses.
type Metadata struct {
	// Issuer is the issuer identifier.
	Issuer string `json:"issuer"`
	// JWKSURI is where the issuer's signing keys are published.
	JWKSURI string `json:"jwks_uri"`
	// IntrospectionEndpoint is the RFC 7662 endpoint.
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	// TokenEndpoint is the OAuth token endpoint (RFC 8693 exchange).
	TokenEndpoint string `json:"token_endpoint"`
	// TokenEndpointAuthMethods lists the client authentication methods the
	// token endpoint accepts.
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	// IntrospectionEndpointAuthMethods lists those of the introspection endpoint.
	IntrospectionEndpointAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	// GrantTypes lists the supported grant types.
	GrantTypes []string `json:"grant_types_supported"`
}

// OpenIDURL returns the OIDC Discovery URL of issuer: issuer +
// "/.well-known/openid-configuration".
func OpenIDURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// OAuthURL returns the RFC 8414 URL of issuer: the well-known segment goes
// between the host and the issuer's path (§3.1).
func OAuthURL(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: issuer is not an absolute URL", ErrInvalidMetadata)
	}
	u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// Fetch gets and decodes the metadata document at url. It checks that the
// document names an issuer and that every endpoint it gives is an absolute
// http(s) URL, but not which issuer: use FetchIssuer for that. Errors wrap
// extauthz.ErrIssuerUnavailable. The deadline is ctx's (the issuer's
// http_timeout, set by the caller); client is required.
func Fetch(ctx context.Context, client *http.Client, url string) (Metadata, error) {
	if client == nil {
		return Metadata{}, fmt.Errorf("%w: discovery: no HTTP client", extauthz.ErrIssuerUnavailable)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: discovery request: %w", extauthz.ErrIssuerUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: discovery: %w", extauthz.ErrIssuerUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBytes))
		return Metadata{}, fmt.Errorf("%w: discovery: status %d", extauthz.ErrIssuerUnavailable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBytes+1))
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: discovery body: %w", extauthz.ErrIssuerUnavailable, err)
	}
	if len(body) > MaxBytes {
		return Metadata{}, fmt.Errorf("%w: %w: larger than %d bytes", extauthz.ErrIssuerUnavailable, ErrInvalidMetadata, MaxBytes)
	}
	md, err := Parse(body)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: %w", extauthz.ErrIssuerUnavailable, err)
	}
	return md, nil
}

// FetchIssuer fetches the metadata of issuer from url, or when url is empty
// from the OIDC Discovery URL and then, on failure, the RFC 8414 one. The
// document's issuer must equal issuer exactly, else the error wraps
// ErrIssuerMismatch.
func FetchIssuer(ctx context.Context, client *http.Client, issuer, url string) (Metadata, error) {
	urls := []string{url}
	if url == "" {
		urls = []string{OpenIDURL(issuer)}
		if u, err := OAuthURL(issuer); err == nil {
			urls = append(urls, u)
		}
	}
	var md Metadata
	var err error
	for _, u := range urls {
		if md, err = Fetch(ctx, client, u); err == nil {
			break
		}
	}
	if err != nil {
		return Metadata{}, err
	}
	if md.Issuer != issuer {
		return Metadata{}, fmt.Errorf("%w: %w: document names another issuer", extauthz.ErrIssuerUnavailable, ErrIssuerMismatch)
	}
	return md, nil
}

// Parse decodes a metadata document and checks its shape: a non-empty
// issuer, and absolute http(s) URLs for every endpoint present. Errors wrap
// ErrInvalidMetadata.
func Parse(data []byte) (Metadata, error) {
	var md Metadata
	if err := json.Unmarshal(data, &md); err != nil {
		return Metadata{}, fmt.Errorf("%w: not a JSON object of the expected shape", ErrInvalidMetadata)
	}
	if md.Issuer == "" {
		return Metadata{}, fmt.Errorf("%w: no issuer", ErrInvalidMetadata)
	}
	for name, v := range map[string]string{
		"jwks_uri": md.JWKSURI, "introspection_endpoint": md.IntrospectionEndpoint, "token_endpoint": md.TokenEndpoint,
	} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return Metadata{}, fmt.Errorf("%w: %s is not an absolute http(s) URL", ErrInvalidMetadata, name)
		}
	}
	return md, nil
}
