package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// actorSource gets tokentailor's own access token with the client
// credentials grant (RFC 6749 §4.4) at the token endpoint, authenticated by
// Options.Auth, and keeps it until the last tenth of its life. It is the
// default Options.ActorToken: a route with exchange.actor sends it as
// actor_token, so the issued token records tokentailor as the actor
// (RFC 8693 §4.1 "act").
type actorSource struct {
	e   *Exchanger
	mu  sync.Mutex
	tok string
	at  time.Time // renew at
}

// actorKey is the singleflight key of the client credentials call; token
// hashes are hex, so it cannot collide with an exchange.
const actorKey = "\x00actor"

func (a *actorSource) token(ctx context.Context) (string, error) {
	a.mu.Lock()
	tok, renewAt := a.tok, a.at
	a.mu.Unlock()
	if tok != "" && a.e.now().Before(renewAt) {
		return tok, nil
	}
	v, err, _ := a.e.group.Do(actorKey, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.e.opts.Timeout)
		defer cancel()
		resp, err := a.e.call(cctx, url.Values{"grant_type": {"client_credentials"}}, "")
		a.e.opts.Metrics.IssuerCall(a.e.opts.Issuer, "token", err)
		if err != nil {
			if errors.Is(err, extauthz.ErrExchangeRefused) {
				// Our own client was refused: a configuration problem, not the caller's.
				return "", fmt.Errorf("%w: client credentials grant refused: %v", extauthz.ErrIssuerUnavailable, err)
			}
			return "", err
		}
		now := a.e.now()
		life := time.Duration(resp.ExpiresIn) * time.Second
		if exp, ok := unverifiedExp(resp.AccessToken); ok && (life <= 0 || exp.Sub(now) < life) {
			life = exp.Sub(now)
		}
		if life <= 0 {
			life = time.Minute // no lifetime given: ask again soon
		}
		a.mu.Lock()
		a.tok, a.at = resp.AccessToken, now.Add(time.Duration(float64(life)*renewFraction))
		a.mu.Unlock()
		return resp.AccessToken, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
