package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
)

// kvFlags collects repeated -ext key=value flags.
type kvFlags map[string]string

func (m kvFlags) String() string { return fmt.Sprint(map[string]string(m)) }
func (m kvFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want key=value")
	}
	m[k] = val
	return nil
}

func explainCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	path := fs.String("config", "", "config file (required)")
	token := fs.String("token", "", "the client's token (or -token-file; - reads stdin)")
	tokenFile := fs.String("token-file", "", "file holding the token")
	method := fs.String("method", "GET", "request method")
	host := fs.String("host", "", "request host")
	reqPath := fs.String("path", "/", "request path, query allowed")
	exts := kvFlags{}
	fs.Var(exts, "ext", "context extension key=value, e.g. -ext route=orders (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(os.Stderr, "explain: -config is required")
		return 2
	}
	tok := *token
	if *tokenFile != "" {
		b, err := readTokenFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "explain:", err)
			return 2
		}
		tok = b
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := pipeline.Build(ctx, cfg, pipeline.Env{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r := extauthz.Request{Method: strings.ToUpper(*method), Host: strings.ToLower(*host), RawPath: *reqPath,
		Headers: map[string]string{}, ContextExtensions: exts}
	r.Path, _, _ = strings.Cut(*reqPath, "?")
	if tok != "" {
		val := tok
		if s := *cfg.Credential.Scheme; s != "" {
			val = s + " " + tok
		}
		r.Headers[cfg.Credential.Header] = val
	}
	out := p.Decide(ctx, &r)
	return printExplanation(out)
}

func readTokenFile(name string) (string, error) {
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return "", err
		}
		defer f.Close()
	}
	// One Read may return part of a pipe's data: read to the end, bounded.
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	return strings.TrimSpace(string(b)), err
}

func printExplanation(out pipeline.Outcome) int {
	route := out.Route
	if route == "" {
		route = "(none)"
	}
	fmt.Printf("route:    %s\n", route)
	if out.TokenHash != "" {
		fmt.Printf("token:    sha256:%s…\n", out.TokenHash)
	}
	if out.Principal != nil {
		p := out.Principal
		fmt.Printf("principal: iss=%s sub=%s client=%s scopes=%v exp=%s\n", p.Issuer, p.Subject, p.ClientID, p.Scopes, p.ExpiresAt.Format(time.RFC3339))
	}
	if out.Err != nil {
		o := out.Denial
		fmt.Printf("decision: DENY %d (%s)\nreason:   %v\n", o.Status, o.Reason, out.Err)
		if o.Challenge != "" {
			fmt.Printf("www-authenticate: %s\n", o.Challenge)
		}
		return 3
	}
	fmt.Printf("decision: ALLOW (mode %s)\n", out.Mode)
	if g := out.Grant; g != nil && out.Token.Value != "" {
		fmt.Printf("upstream header: %s: %s<token>\n", g.Header, g.Prefix)
		fmt.Printf("upstream token expires: %s\n", out.Token.ExpiresAt.Format(time.RFC3339))
		if claims, ok := jwtClaims(out.Token.Value); ok {
			fmt.Printf("upstream claims:\n%s\n", claims)
		}
	}
	return 0
}

// jwtClaims pretty-prints the payload of a compact JWT, unverified.
func jwtClaims(tok string) (string, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var v map[string]any
	if json.Unmarshal(b, &v) != nil {
		return "", false
	}
	pretty, _ := json.MarshalIndent(v, "  ", "  ")
	return "  " + string(pretty), true
}
