package exchange

import (
	"context"
	"net/url"
)

// Post sends one token endpoint request made by another profile of RFC 8693
// (extauthz/txntoken's Transaction Token Service request) through this
// Exchanger's endpoint, client authentication, timeout, body bound and error
// mapping, without its cache: the caller builds form (grant_type included)
// and checks the answer's token types. subject is the subject token, cut out
// of any server error text that is logged. Errors wrap
// extauthz.ErrExchangeRefused (an OAuth error of the server) or
// extauthz.ErrIssuerUnavailable, as for Token.
func (e *Exchanger) Post(ctx context.Context, form url.Values, subject string) (*Response, error) {
	resp, err := e.call(ctx, form, subject)
	e.opts.Metrics.IssuerCall(e.opts.Issuer, "token", unavailableOnly(err))
	return resp, err
}
