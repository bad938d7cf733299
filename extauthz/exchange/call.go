package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
)

func unavailableOnly(err error) error {
	if errors.Is(err, extauthz.ErrIssuerUnavailable) {
		return err
	}
	return nil
}

// call posts form and parses the answer.
func (e *Exchanger) call(ctx context.Context, form url.Values, subject string) (*Response, error) {
	endpoint := e.opts.TokenEndpoint
	if e.opts.TokenEndpointFunc != nil {
		var err error
		if endpoint, err = e.opts.TokenEndpointFunc(ctx); err != nil {
			return nil, fmt.Errorf("%w: token endpoint unknown: %w", extauthz.ErrIssuerUnavailable, err)
		}
	}
	ans, err := clientauth.Post(ctx, e.opts.Client, e.opts.Auth, endpoint, form, "application/json", MaxBodyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: token endpoint: %w", extauthz.ErrIssuerUnavailable, err)
	}
	body, mt := ans.Body, ans.MediaType
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json")
	if ans.Status != http.StatusOK {
		return nil, statusError(ans.Status, body, isJSON, subject)
	}
	if !isJSON {
		return nil, fmt.Errorf("%w: answer of media type %q", extauthz.ErrIssuerUnavailable, mt)
	}
	r, err := ParseResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", extauthz.ErrIssuerUnavailable, err)
	}
	if !strings.EqualFold(r.TokenType, "bearer") && r.TokenType != "N_A" {
		return nil, fmt.Errorf("%w: issued token_type %q cannot be forwarded as a bearer token", extauthz.ErrExchangeRefused, r.TokenType)
	}
	return r, nil
}

// statusError maps a non-200 answer: an OAuth error (RFC 6749 §5.2) of a
// 4xx status is a refusal, except invalid_client (our own credentials);
// anything else is unavailability. The error names the server's error code
// and its error_description (see describe), so that the log says why.
func statusError(status int, body []byte, isJSON bool, subject string) error {
	var oe struct {
		Error       string `json:"error"`
		Description any    `json:"error_description"`
	}
	if status >= 400 && status < 500 && isJSON && json.Unmarshal(body, &oe) == nil && validErrorCode(oe.Error) {
		desc := describe(oe.Description, subject)
		if oe.Error == "invalid_client" {
			return fmt.Errorf("%w: token endpoint rejected tokentailor's client credentials (HTTP %d invalid_client%s)", extauthz.ErrIssuerUnavailable, status, desc)
		}
		return fmt.Errorf("%w: HTTP %d %s%s", extauthz.ErrExchangeRefused, status, oe.Error, desc)
	}
	return fmt.Errorf("%w: token endpoint answered HTTP %d", extauthz.ErrIssuerUnavailable, status)
}
