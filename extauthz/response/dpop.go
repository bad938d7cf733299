package response

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/tokentailor/tokentailor/extauthz/dpop"
)

// DPoPChallenger renders the challenges of DPoP denials (RFC 9449 §7.1,
// §9); *dpop.Verifier implements it.
type DPoPChallenger interface {
	ChallengeFor(err error, realm string) (dpop.Challenge, bool)
}

var _ DPoPChallenger = (*dpop.Verifier)(nil)

// dpopDenial renders err when b.DPoP owns it: the table row's status and
// body, the DPoP challenge instead of the Bearer one, and a DPoP-Nonce
// header when the client must retry with a nonce. ok is false otherwise.
func (b *Builder) dpopDenial(i int, err error) (*authv3.CheckResponse, Denial, bool) {
	if b.DPoP == nil || err == nil {
		return nil, Denial{}, false
	}
	c, ok := b.DPoP.ChallengeFor(err, b.Realm)
	if !ok {
		return nil, Denial{}, false
	}
	r := rows[i]
	class := denials[i]
	class.Challenge = c.WWWAuthenticate
	headers := []*corev3.HeaderValueOption{b.header("www-authenticate", c.WWWAuthenticate)}
	if c.Nonce != "" {
		headers = append(headers, b.header("dpop-nonce", c.Nonce))
	}
	headers = append(headers, b.jsonCT, b.noStore)
	d := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.status)},
		Headers: headers,
		Body:    body(r),
	}
	return b.deny(i, d), class, true
}
