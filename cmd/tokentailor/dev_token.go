package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// listFlags collects a repeatable flag; each value may hold several
// space-separated items ("-scope 'a b' -scope c").
type listFlags []string

func (l *listFlags) String() string { return strings.Join(*l, " ") }
func (l *listFlags) Set(v string) error {
	items := strings.Fields(v)
	if len(items) == 0 {
		return errors.New("empty value")
	}
	*l = append(*l, items...)
	return nil
}

// claimFlags collects repeated -claim name=value. A value that starts with
// [ or { is JSON; any other value is a string.
type claimFlags map[string]any

func (c claimFlags) String() string { return fmt.Sprint(map[string]any(c)) }
func (c claimFlags) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, e.g. tenant=acme")
	}
	if strings.HasPrefix(val, "[") || strings.HasPrefix(val, "{") {
		var j any
		if err := json.Unmarshal([]byte(val), &j); err != nil {
			return fmt.Errorf("claim %s: value looks like JSON but is not: %v", name, err)
		}
		c[name] = j
		return nil
	}
	c[name] = val
	return nil
}

// devTokenCmd prints a token of the running dev server with chosen subject,
// scopes, audience, claims and lifetime: `tokentailor dev token -scope
// orders:write -opaque`. The token alone goes to stdout, so that
// TOKEN=$(tokentailor dev token ...) works.
func devTokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", devSampleSubject, "subject (sub)")
	var scopes, auds listFlags
	fs.Var(&scopes, "scope", `scope (repeatable, or space-separated; default "`+devSampleScopes+`")`)
	fs.Var(&auds, "aud", "audience (repeatable; default "+devSampleAudience+", the one the dev config accepts)")
	claims := claimFlags{}
	fs.Var(claims, "claim", "extra claim name=value (repeatable; a value starting with [ or { is JSON)")
	ttl := fs.Duration("ttl", devSampleTokenLife, "lifetime, at most 24h")
	opaque := fs.Bool("opaque", false, "an opaque token (introspected) instead of a JWT")
	dir := fs.String("dir", defaultDevDir(), "`DIR` of the running tokentailor dev")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tokentailor dev token [-sub S] [-scope S]... [-aud A]... [-claim k=v]... [-ttl 5m] [-opaque] [-dir DIR]\n\nPrints a token of the running `tokentailor dev` (start it first, in another terminal).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tokentailor dev token: unexpected argument %q (flags go before it?)\n", fs.Arg(0))
		return 2
	}
	if len(scopes) == 0 {
		scopes = strings.Fields(devSampleScopes)
	}
	if len(auds) == 0 {
		auds = listFlags{devSampleAudience}
	}
	q := devTokenRequest{Subject: *sub, Scopes: scopes, Audiences: auds, Claims: claims, TTL: ttl.String(), Opaque: *opaque}
	if len(claims) == 0 {
		q.Claims = nil
	}
	// The same checks the server makes, so that a bad flag is named before
	// any server is looked for.
	if _, err := q.validate(); err != nil {
		fmt.Fprintln(stderr, "tokentailor dev token:", strings.TrimPrefix(err.Error(), ErrBadTokenRequest.Error()+": "))
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "tokentailor dev token: no user cache directory (is $HOME set?): pass -dir")
		return 2
	}
	ans, err := requestDevToken(ctx, *dir, q)
	if err != nil {
		fmt.Fprintln(stderr, "tokentailor dev token:", err)
		return 1
	}
	kind := "JWT"
	if ans.Opaque {
		kind = "opaque token"
	}
	fmt.Fprintf(stderr, "%s for %s, scope %q, aud %s, expires %s\n", kind, q.Subject, strings.Join(q.Scopes, " "),
		strings.Join(q.Audiences, ","), time.Unix(ans.ExpiresAt, 0).Format(time.TimeOnly))
	fmt.Fprintln(stdout, ans.Token)
	return 0
}

// requestDevToken asks the dev server whose state file is in dir.
func requestDevToken(ctx context.Context, dir string, q devTokenRequest) (devTokenAnswer, error) {
	raw, err := os.ReadFile(filepath.Join(dir, devStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return devTokenAnswer{}, fmt.Errorf("%w in %s: start one first: go run ./cmd/tokentailor dev", errNoDevServer, dir)
	}
	if err != nil {
		return devTokenAnswer{}, err
	}
	var st devState
	if err := json.Unmarshal(raw, &st); err != nil || st.Secret == "" {
		return devTokenAnswer{}, fmt.Errorf("%s: unreadable dev state file (restart tokentailor dev)", filepath.Join(dir, devStateFile))
	}
	u, err := url.Parse(st.IssueURL)
	if err != nil || u.Scheme != "http" || checkLoopback(u.Host) != nil {
		// The secret goes nowhere but to the loopback dev server.
		return devTokenAnswer{}, fmt.Errorf("%s: the dev state file names no loopback URL", filepath.Join(dir, devStateFile))
	}
	body, err := json.Marshal(q)
	if err != nil {
		return devTokenAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return devTokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+st.Secret)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return devTokenAnswer{}, fmt.Errorf("%w at %s (its state file is stale): start it with: go run ./cmd/tokentailor dev", errNoDevServer, u.Host)
		}
		return devTokenAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, devMaxBody))
	if err != nil {
		return devTokenAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return devTokenAnswer{}, fmt.Errorf("the dev server refused (HTTP %d): %s", resp.StatusCode, e.Error)
	}
	var ans devTokenAnswer
	if err := json.Unmarshal(b, &ans); err != nil || ans.Token == "" {
		return devTokenAnswer{}, fmt.Errorf("the dev server answered no token")
	}
	return ans, nil
}
