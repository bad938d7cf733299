package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
)

// checkTimeout bounds check-config's calls to issuers, all of them.
const checkTimeout = 30 * time.Second

func checkConfigCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	offline := fs.Bool("offline", false, "validate the file only: do not load keys or contact issuers")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tokentailor check-config [-offline] FILE")
		return 2
	}
	name := fs.Arg(0)
	cfg, err := config.Load(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid:\n%v\n", name, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", name, w)
	}
	if !*offline {
		// Reach everything serve will need from each issuer, reporting
		// each check, then load keys and secrets exactly as serve would,
		// without listening.
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		failed := reachIssuers(ctx, os.Stdout, cfg, nil) + checkTracing(ctx, os.Stdout, cfg)
		ks := pipeline.NewKeySets(ctx)
		p, err := pipeline.Build(ctx, cfg, pipeline.Env{KeySets: ks})
		if err == nil {
			// serve would start with missing endpoints not ready (503s).
			err = p.CheckEndpoints(ctx)
		}
		ks.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: invalid:\n%v\n", name, err)
			return 1
		}
		if failed > 0 {
			fmt.Fprintf(os.Stderr, "%s: %d check(s) failed\n", name, failed)
			return 1
		}
	}
	fmt.Printf("%s: ok (%d issuers, %d routes)\n", name, len(cfg.Issuers), len(cfg.Routes))
	return 0
}

// reachIssuers fetches, for every issuer of cfg, what serve will fetch: its
// discovery document (comparing the issuer it names with the configured
// one, as tokens carry the former in iss), its JWKS, and the introspection
// and token endpoints the config needs. It writes one line per check to w
// ("ok" or "FAIL") and returns the number of failures. It sends no token
// and no client credentials. transport nil means the default.
func reachIssuers(ctx context.Context, w io.Writer, cfg *config.Config, transport http.RoundTripper) (failed int) {
	report := func(ok bool, format string, args ...any) {
		status := "ok  "
		if !ok {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s %s\n", status, fmt.Sprintf(format, args...))
	}
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		f := fmt.Sprintf("issuers[%d]", i)
		client := &http.Client{
			Timeout: is.HTTPTimeout.Duration, Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		var md discovery.Metadata
		haveMD := false
		if is.Discovery {
			var from string
			var err error
			md, from, err = fetchMetadata(ctx, client, is)
			if haveMD = err == nil; !haveMD {
				report(false, "%s: discovery %s: %v", f, from, err)
			} else {
				report(true, "%s: discovery %s", f, from)
				report(md.Issuer == is.Issuer, "%s: token iss %q (named by the discovery document) vs configured %q%s",
					f, md.Issuer, is.Issuer, mismatchHint(md.Issuer, is.Issuer))
				// serve uses no endpoint of a document naming another
				// issuer (RFC 8414 §3.3), so neither does this check.
				haveMD = md.Issuer == is.Issuer
			}
		}
		jwksURL := is.JWKSURL
		if jwksURL == "" && haveMD {
			jwksURL = md.JWKSURI
		}
		switch {
		case jwksURL != "":
			set, err := jwks.New(jwks.Options{Issuer: is.Issuer, URL: jwksURL, Client: client,
				RefreshInterval: is.JWKSRefresh.Duration, MinRefetchInterval: is.JWKSMinRefetch.Duration,
				MinRetryBackoff: jwks.DefaultMinRetryBackoff, Now: time.Now,
				Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err == nil {
				err = set.Refresh(ctx)
			}
			if err != nil {
				report(false, "%s: jwks %s: %v", f, jwksURL, err)
			} else {
				report(true, "%s: jwks %s: usable keys fetched", f, jwksURL)
			}
		case is.Discovery && haveMD:
			report(false, "%s: jwks: the discovery document has no jwks_uri (set jwks_url)", f)
		}
		if is.Introspection != nil {
			endpoint, from := is.Introspection.Endpoint, "configured"
			if endpoint == "" && haveMD {
				endpoint, from = md.IntrospectionEndpoint, "from discovery"
			}
			if endpoint == "" {
				report(false, "%s.introspection.endpoint: not configured and the discovery document has no introspection_endpoint", f)
			} else {
				report(true, "%s: introspection endpoint %s (%s)", f, endpoint, from)
			}
		}
		if is.Client != nil && exchangesAt(cfg, is.Issuer) {
			endpoint, from := is.TokenEndpoint, "configured"
			if endpoint == "" && haveMD {
				endpoint, from = md.TokenEndpoint, "from discovery"
			}
			if endpoint == "" {
				report(false, "%s.token_endpoint: a route exchanges tokens at this issuer, but it is not configured and the discovery document has no token_endpoint", f)
			} else {
				report(true, "%s: token endpoint %s (%s)", f, endpoint, from)
			}
		}
	}
	return failed
}

// fetchMetadata fetches is's discovery document from discovery_url, or the
// OIDC and then the RFC 8414 well-known URL, and returns it with the URL it
// came from (on failure, the URLs tried). It does not require the document
// to name is: the caller compares and reports.
func fetchMetadata(ctx context.Context, client *http.Client, is *config.Issuer) (discovery.Metadata, string, error) {
	urls := []string{is.DiscoveryURL}
	if is.DiscoveryURL == "" {
		urls = []string{discovery.OpenIDURL(is.Issuer)}
		if u, err := discovery.OAuthURL(is.Issuer); err == nil {
			urls = append(urls, u)
		}
	}
	var err error
	for _, u := range urls {
		var md discovery.Metadata
		if md, err = discovery.Fetch(ctx, client, u); err == nil {
			return md, u, nil
		}
	}
	return discovery.Metadata{}, strings.Join(urls, " and "), err
}

// mismatchHint explains a differing issuer, "" when they are equal.
func mismatchHint(named, configured string) string {
	switch {
	case named == configured:
		return ": equal"
	case named == configured+"/" || named+"/" == configured:
		return ": differ by a trailing slash; configure the issuer exactly as the document names it"
	default:
		return ": differ; tokens of this issuer would be refused and serve would not use this metadata"
	}
}

// exchangesAt reports whether a route of cfg may exchange tokens at issuer:
// one in mode exchange that names it, or names none (then the incoming
// token's issuer is asked).
func exchangesAt(cfg *config.Config, issuer string) bool {
	for _, r := range cfg.Routes {
		u := r.Upstream
		if r.Public || u.Mode != string(extauthz.ModeExchange) {
			continue
		}
		if u.Exchange == nil || u.Exchange.Issuer == "" || u.Exchange.Issuer == issuer {
			return true
		}
	}
	return false
}
