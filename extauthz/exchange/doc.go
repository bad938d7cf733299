// Package exchange gets upstream tokens from the authorization server's
// token endpoint by OAuth 2.0 Token Exchange (RFC 8693): the route mode
// "exchange". It implements extauthz.TokenSource, like extauthz/mint.
//
// # The request (RFC 8693 §2.1)
//
//	grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//	subject_token=<the incoming token>
//	subject_token_type=<ExchangeSpec.SubjectTokenType>  (config's default: access_token)
//	audience=<Grant.Audience>            (when set)
//	resource=<ExchangeSpec.Resource>     (when set, RFC 8707)
//	scope=<Grant.Scopes, space-separated> (when any)
//	requested_token_type=<ExchangeSpec.RequestedTokenType>  (config's default: access_token)
//	actor_token, actor_token_type        (when ExchangeSpec.Actor)
//
// plus the client authentication of Options.Auth.
//
// Config's default subject_token_type is urn:ietf:params:oauth:token-type:access_token
// for every credential, JWT or opaque: what tokentailor holds is an access
// token whatever its format, and servers verify the subject token by its
// declared type (zitadel answers 400 invalid_request "subject_token is
// invalid" to a JWT access token sent as ...:jwt). A route sets
// ExchangeSpec.SubjectTokenType for a server that wants another type.
//
// Config's default requested_token_type is urn:ietf:params:oauth:token-type:access_token,
// not ...:jwt. RFC 8693 §3 uses "jwt" for a JWT of any purpose, while what
// the upstream needs is an access token for its audience; a JWT access token
// (RFC 9068) is such an access token, and servers that issue JWT access
// tokens issue them for this type (several servers do not support requesting
// "jwt" at all). A route that must receive a JWT asks for ...:jwt
// explicitly; the issued token must then have the JWT compact form.
//
// # Outcomes
//
// OAuth errors from the endpoint (invalid_target, invalid_scope,
// invalid_grant, unauthorized_client, invalid_request, …) and issued tokens
// that cannot be forwarded as bearer tokens deny with extauthz.ErrExchangeRefused
// (403); the server's error and error_description are logged, bounded,
// reduced to the characters RFC 6749 allows, and with any part of the
// subject token cut out. invalid_client means tokentailor's own credentials are wrong: that
// is extauthz.ErrIssuerUnavailable (503), like network errors, timeouts, 5xx
// and malformed answers. Nothing is returned that was not a 200 answer.
//
// # Lifetime and caching
//
// The issued token's lifetime is the authorization server's decision;
// Token.ExpiresAt reports min(now+expires_in, the issued JWT's exp, the
// incoming token's exp), so the token is never cached or reported as valid
// beyond the incoming one. Tokens are cached under a hash of (incoming token,
// route, audience, scopes, resource, requested type, actor), bounded in
// number, and renewed once 90% of their lifetime has passed. Concurrent
// requests for the same entry share one call.
package exchange
