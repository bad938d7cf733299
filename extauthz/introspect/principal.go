package introspect

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// acceptedTokenTypes lists the token_type values of an access token usable
// as a bearer token; "" is an answer without token_type. DPoP- or otherwise
// bound tokens are refused: tokentailor cannot check their proof.
var acceptedTokenTypes = map[string]bool{
	"": true, "bearer": true, "access_token": true, "urn:ietf:params:oauth:token-type:access_token": true,
}

// principal checks an answer and builds the principal it describes.
func (i *Introspector) principal(a *Answer, now time.Time) (*extauthz.Principal, error) {
	if !a.Active {
		return nil, fmt.Errorf("%w: introspection says inactive", extauthz.ErrTokenInactive)
	}
	if !acceptedTokenTypes[strings.ToLower(a.TokenType)] || (a.TokenUse != "" && a.TokenUse != "access_token") {
		return nil, fmt.Errorf("%w: not a bearer access token", extauthz.ErrInvalidToken)
	}
	iss := a.Issuer
	if iss == "" {
		iss = i.opts.Issuer
	} else if iss != i.opts.Issuer {
		return nil, fmt.Errorf("%w: introspection answer names another issuer", extauthz.ErrUnknownIssuer)
	}
	if err := i.checkAudience(a); err != nil {
		return nil, err
	}
	exp, unknown := a.ExpiresAt, a.ExpiresAt.IsZero()
	if unknown {
		// No exp: vouch for the token only as long as the answer is cached,
		// so anything derived from it (minted tokens) lives no longer.
		exp = now.Add(i.opts.MaxCacheTTL)
	}
	if !now.Add(-i.opts.Leeway).Before(exp) {
		return nil, fmt.Errorf("%w: introspected token expired", extauthz.ErrTokenExpired)
	}
	sub, err := i.subject(a)
	if err != nil {
		return nil, err
	}
	return &extauthz.Principal{
		Issuer:        iss,
		Subject:       sub,
		ClientID:      a.ClientID,
		Audience:      a.Audience,
		Scopes:        a.Scopes,
		Claims:        a.Claims,
		Unbound:       extauthz.Unconfirmed(a.Claims),
		ExpiresAt:     exp,
		ExpiryUnknown: unknown,
		IssuedAt:      a.IssuedAt,
	}, nil
}

// checkAudience applies Options.Audiences to the answer's aud: required by
// default; with AudienceByServer, checked only when the answer has one.
func (i *Introspector) checkAudience(a *Answer) error {
	if len(i.opts.Audiences) == 0 || (i.opts.AudienceByServer && len(a.Audience) == 0) {
		return nil
	}
	if !slices.ContainsFunc(a.Audience, func(s string) bool { return slices.Contains(i.opts.Audiences, s) }) {
		if len(a.Audience) == 0 {
			return fmt.Errorf("%w: introspection answer has no aud (set introspection.audience: server if the server checks it)", extauthz.ErrWrongAudience)
		}
		return fmt.Errorf("%w: introspected token is not for this audience", extauthz.ErrWrongAudience)
	}
	return nil
}

// subject reads the subject from the first of Options.SubjectClaims that
// holds a non-empty string.
func (i *Introspector) subject(a *Answer) (string, error) {
	for _, name := range i.opts.SubjectClaims {
		if v, ok := a.Claims[name].(string); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("%w: introspection answer names no subject (looked at %s)", extauthz.ErrInvalidToken, strings.Join(i.opts.SubjectClaims, ", "))
}
