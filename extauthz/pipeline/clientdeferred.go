package pipeline

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/clientauth"
)

// unloadedClient stands for an issuer client whose secret or key could not
// be loaded in a build that was told to go on without it
// (Env.ClientCredentialsMissing): a call that needs it fails, so a request
// that would introspect or exchange at that issuer is a 503, and a request
// that needs neither is decided as serve would decide it.
type unloadedClient struct {
	id, field string
}

// Apply refuses to authenticate: the credentials were never loaded.
func (c unloadedClient) Apply(*http.Request, url.Values) error {
	return fmt.Errorf("%w: %s: client credentials not loaded", extauthz.ErrIssuerUnavailable, c.field)
}

// ClientID returns the configured client id.
func (c unloadedClient) ClientID() string { return c.id }

// Name says the method is missing.
func (c unloadedClient) Name() string { return "unloaded" }

var _ clientauth.Method = unloadedClient{}
