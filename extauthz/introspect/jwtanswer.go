package introspect

import (
	"context"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// jwtAnswerAlgs are the algorithms accepted on RFC 9701 answers: asymmetric
// only, so a key published in the JWKS can never double as an HMAC secret.
var jwtAnswerAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// parseJWTAnswer verifies an RFC 9701 answer and parses its
// token_introspection claim.
func (i *Introspector) parseJWTAnswer(ctx context.Context, raw string) (*Answer, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods(jwtAnswerAlgs),
		jwt.WithIssuer(i.opts.Issuer),
		jwt.WithAudience(i.opts.Auth.ClientID()),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(i.opts.Leeway),
		jwt.WithTimeFunc(i.now),
	)
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), TypJWT) {
			return nil, fmt.Errorf("typ %q, want %s", typ, TypJWT)
		}
		kid, _ := t.Header["kid"].(string)
		return i.opts.Keys.Key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return nil, fmt.Errorf("%w: signed answer rejected: %w", ErrMalformedAnswer, err)
	}
	ti, ok := claims["token_introspection"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: signed answer has no token_introspection object", ErrMalformedAnswer)
	}
	return answerFromMap(ti, i.opts.ScopeClaims)
}
