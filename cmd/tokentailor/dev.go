package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/server"
)

//go:embed dev.yaml
var devTemplate string

// Defaults of `tokentailor dev`; the printed commands leave out flags that
// have them.
const (
	devDefaultGRPC     = "127.0.0.1:9191"
	devDefaultAdmin    = "127.0.0.1:9090"
	devDefaultIssuer   = "127.0.0.1:9092"
	devClientID        = "tokentailor"
	devExchangeAud     = "inventory-api"
	devStateFile       = "dev.json"
	devSampleSubject   = "alice"
	devSampleScopes    = "orders:read inventory:read"
	devSampleAudience  = "api.example.com"
	devSampleTokenLife = time.Hour
)

// devIO is where dev writes, and whether it may tune the Go runtime (tests,
// which share one process, do not).
type devIO struct {
	out, errOut io.Writer
	tuneRuntime bool
}

func devCmd(ctx context.Context, args []string) int {
	if len(args) > 0 && args[0] == "token" {
		return devTokenCmd(ctx, args[1:], os.Stdout, os.Stderr)
	}
	return runDev(ctx, args, devIO{out: os.Stdout, errOut: os.Stderr, tuneRuntime: true})
}

// defaultDevDir is where dev keeps its keys, config and state file, and where
// `dev token` finds the running server: the user's cache directory.
func defaultDevDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "tokentailor", "dev")
}

// devState is the state file dev writes into its directory while it runs:
// where `dev token` asks for tokens, and the secret that proves it may.
type devState struct {
	// IssueURL is the dev server's devPathIssue endpoint.
	IssueURL string `json:"issue_url"`
	// Secret is the bearer secret of IssueURL.
	Secret string `json:"secret"`
}

func runDev(ctx context.Context, args []string, dio devIO) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(dio.errOut)
	grpcAddr := fs.String("grpc", devDefaultGRPC, "gRPC ext_authz address")
	admin := fs.String("admin", devDefaultAdmin, "admin HTTP address (JWKS of minted tokens, metrics, health)")
	issuerAddr := fs.String("issuer", devDefaultIssuer, "address of the built-in authorization server (loopback only)")
	dir := fs.String("dir", defaultDevDir(), "`DIR` for dev's keys, config and state (dev token reads it)")
	fs.Usage = func() {
		fmt.Fprintln(dio.errOut, "usage: tokentailor dev [-grpc ADDR] [-admin ADDR] [-issuer ADDR] [-dir DIR]\n       tokentailor dev token [flags]   (see tokentailor dev token -h)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(dio.errOut, "tokentailor dev: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(dio.errOut, "tokentailor dev: no user cache directory (is $HOME set?): pass -dir")
		return 2
	}
	if err := checkLoopback(*issuerAddr); err != nil {
		fmt.Fprintln(dio.errOut, "tokentailor dev: -issuer:", err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(dio.errOut, "tokentailor dev:", err)
		return 1
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fail(err)
	}
	// Bind the authorization server first: the config names its URL, and
	// server.New fetches its metadata.
	ln, err := net.Listen("tcp", *issuerAddr)
	if err != nil {
		return fail(fmt.Errorf("-issuer: %w", err))
	}
	as, err := newDevAuthServer("http://"+ln.Addr().String(), devClientID, []string{devExchangeAud})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	files, err := writeDevFiles(*dir, devFiles{GRPC: *grpcAddr, Admin: *admin, Issuer: as.url, ClientSecret: as.clientSecret})
	if err == nil {
		var state []byte
		state, err = json.Marshal(devState{IssueURL: as.url + devPathIssue, Secret: as.issueSecret})
		if err == nil {
			statePath := filepath.Join(*dir, devStateFile)
			files = append(files, statePath)
			err = os.WriteFile(statePath, state, 0o600)
		}
	}
	defer func() {
		for _, f := range files {
			_ = os.Remove(f)
		}
	}()
	if err != nil {
		ln.Close()
		return fail(err)
	}
	hs := &http.Server{Handler: as.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}()

	opts := server.Options{ConfigPath: filepath.Join(*dir, "config.yaml"), TuneRuntime: dio.tuneRuntime, LogOutput: dio.errOut}
	return serve(ctx, opts, func(srv *server.Server) {
		b := devBanner{as: as, dir: *dir, defaultDir: *dir == defaultDevDir(), grpc: *grpcAddr, admin: *admin}
		if a := srv.GRPCAddr(); a != nil {
			b.grpc = a.String()
		}
		if a := srv.AdminAddr(); a != nil {
			b.admin = a.String()
		}
		if err := b.print(dio.out); err != nil {
			fmt.Fprintln(dio.errOut, "tokentailor dev: sample tokens:", err)
		}
	})
}

// checkLoopback refuses addresses off the loopback interface: the dev server
// hands out tokens to whoever asks.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q: the dev authorization server listens on loopback only (e.g. 127.0.0.1:9092)", addr)
	}
	return nil
}

// devBanner is what dev prints once it listens: sample tokens and the
// commands of the three journeys.
type devBanner struct {
	as          *devAuthServer
	dir         string
	defaultDir  bool
	grpc, admin string
}

func (b devBanner) print(w io.Writer) error {
	sample := devTokenRequest{Subject: devSampleSubject, Scopes: strings.Fields(devSampleScopes), Audiences: []string{devSampleAudience}, TTL: devSampleTokenLife.String()}
	jwtTok, _, err := b.as.issue(sample)
	if err != nil {
		return err
	}
	sample.Opaque = true
	opaqueTok, _, err := b.as.issue(sample)
	if err != nil {
		return err
	}
	req := "go run ./cmd/tokentailor request"
	if b.grpc != devDefaultGRPC {
		req += " -addr " + b.grpc
	}
	tokenCmd := "go run ./cmd/tokentailor dev token"
	if !b.defaultDir {
		tokenCmd += " -dir " + shellQuote(b.dir)
	}
	secret := shellQuote(filepath.Join(b.dir, "client-secret"))
	_, err = fmt.Fprintf(w, `
tokentailor dev is running
  ext_authz (gRPC)              %[1]s
  JWKS of minted tokens         http://%[2]s/.well-known/jwks.json
  dev authorization server      %[3]s   (discovery, JWKS, introspection, token exchange)
  config, keys and secrets      %[4]s

Sample tokens (sub %[5]s, scope "%[6]s", aud %[7]s, valid 1h):
  JWT=%[8]s
  OPAQUE=%[9]s

In another terminal, set JWT and OPAQUE as above, then send Checks as Envoy would:
  # 1. JWT: verified with the server's JWKS; the upstream gets a token minted for orders-api
  %[10]s -H "authorization: Bearer $JWT" GET /orders/42
  # 2. opaque token: introspected at the server (phantom token); the upstream gets a minted token
  %[10]s -H "authorization: Bearer $OPAQUE" GET /orders/42
  # 3. exchange mode: the upstream gets a token the server issued for %[11]s (RFC 8693)
  %[10]s -H "authorization: Bearer $JWT" GET /inventory/7
  # denied: 403 insufficient_scope (no orders:write), then 401 (no token)
  %[10]s -H "authorization: Bearer $JWT" POST /orders
  %[10]s GET /orders/42

Tokens of your own (prints the token; -opaque for an opaque one):
  TOKEN=$(%[12]s -scope orders:read -scope orders:write -claim tenant=globex -ttl 5m)

The authorization server itself:
  curl -s %[3]s/.well-known/openid-configuration
  curl -s -u %[13]s:$(cat %[14]s) -d "token=$OPAQUE" %[3]s/introspect
  curl -s -u %[13]s:$(cat %[14]s) -d grant_type=%[15]s -d subject_token_type=%[16]s \
       -d "subject_token=$JWT" -d audience=%[11]s %[3]s/token

`, b.grpc, b.admin, b.as.url, b.dir, devSampleSubject, devSampleScopes, devSampleAudience, jwtTok, opaqueTok,
		req, devExchangeAud, tokenCmd, devClientID, secret, grantTokenExchange, tokenTypeAccessToken)
	return err
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// devFiles fills the dev config template.
type devFiles struct {
	GRPC, Admin, Issuer, ClientSecret string
}

// writeDevFiles writes a fresh Ed25519 signing key, tokentailor's client
// secret at the dev server, and the dev config into dir, and returns the
// files written.
func writeDevFiles(dir string, f devFiles) ([]string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	var buf bytes.Buffer
	tmpl, err := template.New("dev").Option("missingkey=error").Parse(devTemplate)
	if err != nil {
		return nil, err
	}
	data := map[string]string{
		"GRPC": f.GRPC, "Admin": f.Admin, "Dir": dir, "Issuer": f.Issuer, "ClientID": devClientID, "ExchangeAudience": devExchangeAud,
	}
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, err
	}
	var written []string
	for _, file := range []struct {
		name    string
		content []byte
	}{
		{"signing.pem", key},
		{"client-secret", []byte(f.ClientSecret + "\n")},
		{"config.yaml", buf.Bytes()},
	} {
		path := filepath.Join(dir, file.name)
		if err := os.WriteFile(path, file.content, 0o600); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// errNoDevServer: no state file, so no dev server is running with this dir.
var errNoDevServer = errors.New("no running tokentailor dev found")
