package dpop

import (
	"errors"
	"fmt"
	"strings"
)

// Mode is how an issuer or route treats DPoP (config: sender_constraint).
type Mode string

const (
	// ModeOff ignores DPoP: tokens are taken as bearer tokens whatever their
	// cnf, as by a resource server unaware of DPoP (RFC 9449 §7.2 ¶3). The default.
	ModeOff Mode = "off"
	// ModeOptional accepts Bearer tokens that are not DPoP-bound and DPoP
	// tokens with a valid proof; a DPoP-bound token presented as Bearer is refused.
	ModeOptional Mode = "optional"
	// ModeRequired accepts only DPoP-bound tokens with a valid proof.
	ModeRequired Mode = "required"
)

// ParseMode reads a config value; "" is ModeOff.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeOff:
		return ModeOff, nil
	case ModeOptional, ModeRequired:
		return Mode(s), nil
	}
	return "", fmt.Errorf("sender_constraint %q: want off, optional or required", s)
}

// Scheme names of the Authorization header.
const (
	SchemeBearer = "Bearer"
	SchemeDPoP   = "DPoP"
)

// errCNF: cnf or cnf.jkt has the wrong JSON type; the binding cannot be read.
var errCNF = fmt.Errorf("%w: cnf.jkt is not a string", ErrKeyBinding)

// JKT returns the token's cnf.jkt (RFC 9449 §6.1 in a JWT, §6.2 in an
// introspection answer), read from its claims. bound says the token carries
// one; a cnf or jkt of the wrong type is an error (a bound token whose
// binding cannot be checked must not pass as unbound).
func JKT(claims map[string]any) (jkt string, bound bool, err error) {
	raw, ok := claims["cnf"]
	if !ok || raw == nil {
		return "", false, nil
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", true, errCNF
	}
	v, ok := cnf["jkt"]
	if !ok {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", true, errCNF
	}
	return s, true, nil
}

// Decide says whether a proof must be verified for a token presented with
// scheme (compared case-insensitively, RFC 9110 §11.1) under mode, given
// whether the token is DPoP-bound (see JKT). It refuses:
//   - a DPoP-bound token presented as Bearer (RFC 9449 §7.2), unless mode is off;
//   - a Bearer token where mode is required (ErrDPoPRequired);
//   - the DPoP scheme where mode is off (the token is not accepted as DPoP
//     where DPoP is not configured: ErrKeyBinding).
//
// The DPoP scheme with a token that is not bound still returns verify=true:
// Verify then fails with ErrKeyBinding, since there is no key to match.
func Decide(mode Mode, scheme string, bound bool) (verify bool, err error) {
	dpop := strings.EqualFold(scheme, SchemeDPoP)
	switch {
	case mode == ModeOff || mode == "":
		if dpop {
			return false, fmt.Errorf("%w: DPoP scheme where DPoP is off", ErrKeyBinding)
		}
		return false, nil
	case dpop:
		return true, nil
	case bound:
		return false, ErrBearerDowngrade
	case mode == ModeRequired:
		return false, ErrDPoPRequired
	default:
		return false, nil
	}
}

// Challenge is the answer to a DPoP-related denial.
type Challenge struct {
	// WWWAuthenticate is the header value, e.g.
	// `DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"`.
	WWWAuthenticate string
	// Nonce, when set, goes in a DPoP-Nonce response header (RFC 9449 §9).
	Nonce string
}

// ChallengeFor renders the WWW-Authenticate value for err per RFC 9449 §7.1
// and §7.2; ok is false for errors that are not DPoP's (the caller renders
// those as before). realm is included when not empty.
//   - proof problems: DPoP error="invalid_dpop_proof", algs;
//   - ErrUseNonce: DPoP error="use_dpop_nonce", algs, plus a fresh nonce;
//   - ErrKeyBinding: DPoP error="invalid_token", algs;
//   - ErrBearerDowngrade, ErrDPoPRequired: the Bearer challenge carries the
//     error (the scheme used was Bearer, §7.2 rule 2) and a DPoP challenge
//     with algs tells the client what it should use.
//
// No error_description is sent: clients learn the error code only.
func (v *Verifier) ChallengeFor(err error, realm string) (Challenge, bool) {
	algs := `algs="` + strings.Join(v.algNames, " ") + `"`
	dpop := func(code string) string {
		var b strings.Builder
		b.WriteString("DPoP ")
		if realm != "" {
			b.WriteString(`realm="` + quoteSafe(realm) + `", `)
		}
		b.WriteString(`error="` + code + `", ` + algs)
		return b.String()
	}
	switch {
	case errors.Is(err, ErrUseNonce):
		return Challenge{WWWAuthenticate: dpop("use_dpop_nonce"), Nonce: v.Nonce()}, true
	case isProofError(err):
		return Challenge{WWWAuthenticate: dpop("invalid_dpop_proof")}, true
	case errors.Is(err, ErrKeyBinding):
		return Challenge{WWWAuthenticate: dpop("invalid_token")}, true
	case errors.Is(err, ErrBearerDowngrade), errors.Is(err, ErrDPoPRequired):
		bearer := "Bearer "
		if realm != "" {
			bearer += `realm="` + quoteSafe(realm) + `", `
		}
		return Challenge{WWWAuthenticate: bearer + `error="invalid_token", DPoP ` + algs}, true
	}
	return Challenge{}, false
}

// quoteSafe drops characters that cannot appear in a quoted-string.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
