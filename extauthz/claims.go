package extauthz

// reservedClaims are the claims tokentailor sets itself in a minted token:
// the registered claims of RFC 7519, the scopes (scope of RFC 8693/9068 and
// scp, which many consumers read too), client_id, the actor (act) and the
// confirmation (cnf) of sender-constrained tokens. A route's fixed or copied
// claims may never name one of them: config refuses them and the minter
// drops any that reach it.
var reservedClaims = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "scp", "client_id", "act", "cnf"}

// IsReservedClaim reports whether name is a claim tokentailor sets itself
// in minted tokens, which routes may not set or overwrite.
func IsReservedClaim(name string) bool {
	for _, r := range reservedClaims {
		if r == name {
			return true
		}
	}
	return false
}
