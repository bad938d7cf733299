package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

func TestDevConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeDevFiles(dir, devFiles{GRPC: devDefaultGRPC, Admin: devDefaultAdmin, Issuer: "http://" + devDefaultIssuer, ClientSecret: "s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]bool{}
	for _, r := range cfg.Routes {
		modes[r.Upstream.Mode] = true
	}
	if !modes["mint"] || !modes["exchange"] || cfg.Issuers[0].Introspection == nil || cfg.Issuers[0].Client == nil {
		t.Fatalf("the dev config must serve the three journeys (mint, introspection, exchange): %+v", cfg.Routes)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// devRun is a `tokentailor dev` running in this process on random ports.
type devRun struct {
	dir      string
	vars     map[string]string // JWT, OPAQUE
	requests []string          // printed `tokentailor request` commands, as printed
	tokenCmd string            // the printed `dev token` command
	issuer   string
	admin    string
}

// startDev runs dev on random ports until the test ends and reads what it
// prints.
func startDev(t *testing.T) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runDev(ctx, []string{"-grpc", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-issuer", "127.0.0.1:0", "-dir", dir},
			devIO{out: pw, errOut: logs})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dev exited %d on cancel, want 0; logs:\n%s", code, logs.String())
		}
		if _, err := os.Stat(filepath.Join(dir, devStateFile)); err == nil {
			t.Error("dev left its state file behind")
		}
	})
	d := &devRun{dir: dir, vars: map[string]string{}}
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "JWT="), strings.HasPrefix(line, "OPAQUE="):
			k, v, _ := strings.Cut(line, "=")
			d.vars[k] = v
		case strings.HasPrefix(line, "go run ./cmd/tokentailor request "):
			d.requests = append(d.requests, line)
		case strings.HasPrefix(line, "TOKEN=$("):
			d.tokenCmd = line
		case strings.HasPrefix(line, "dev authorization server"):
			d.issuer = strings.Fields(line)[3]
		case strings.HasPrefix(line, "JWKS of minted tokens"):
			u, _ := url.Parse(strings.Fields(line)[4])
			d.admin = u.Host
		}
		if strings.HasSuffix(line, "/token") { // the banner's last line
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if d.vars["JWT"] == "" || d.vars["OPAQUE"] == "" || d.tokenCmd == "" || d.issuer == "" || d.admin == "" {
		t.Fatalf("dev printed an incomplete banner: %+v\nlogs:\n%s", d, logs.String())
	}
	// Ready: the dev server's keys were fetched; the first Check must pass.
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get("http://" + d.admin + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev never became ready; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

// shellFields splits a printed command line as a POSIX shell would for the
// forms dev prints: words, "double quotes" and 'single quotes', $VAR.
func shellFields(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	inWord := false
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := vars[k]
			if !ok {
				t.Fatalf("command %q uses $%s, which dev did not print", line, k)
			}
			return v
		})
	}
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case '"', '\'':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			s := line[i+1 : i+1+j]
			if c == '"' {
				s = expand(s)
			}
			cur.WriteString(s)
			inWord = true
			i += j + 1
		case '$':
			j := i + 1
			for j < len(line) && (line[j] == '_' || line[j] >= 'A' && line[j] <= 'Z') {
				j++
			}
			cur.WriteString(expand(line[i:j]))
			inWord = true
			i = j - 1
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// upstreamClaims returns the claims of the token a CheckResponse (as printed
// by `request`) hands the upstream in the authorization header.
func upstreamClaims(t *testing.T, out string) map[string]any {
	t.Helper()
	var resp struct {
		OkResponse struct {
			Headers []struct {
				Header struct{ Key, Value string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("request output is no CheckResponse: %v\n%s", err, out)
	}
	for _, h := range resp.OkResponse.Headers {
		if h.Header.Key != "authorization" {
			continue
		}
		tok, _ := strings.CutPrefix(h.Header.Value, "Bearer ")
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("upstream token is no JWT")
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		c["raw"] = tok
		return c
	}
	t.Fatalf("no authorization header for the upstream:\n%s", out)
	return nil
}

func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDevJourneys runs `tokentailor dev` and every `tokentailor request`
// command it prints, through the real gRPC server: JWT → mint, opaque →
// introspection → mint, exchange, and the denials; then a `dev token`.
func TestDevJourneys(t *testing.T) {
	d := startDev(t)
	jwtExp := jwtPayload(t, d.vars["JWT"])["exp"].(float64)
	tests := []struct {
		name     string
		printed  string // the command as printed, after "request" and -addr
		wantExit int
		check    func(t *testing.T, out string)
	}{
		{name: "JWT to mint", printed: `-H "authorization: Bearer $JWT" GET /orders/42`, check: func(t *testing.T, out string) {
			c := upstreamClaims(t, out)
			if c["iss"] != "https://tokentailor.dev.internal" || c["aud"] != "orders-api" || c["scope"] != "orders:read" || c["email"] != "alice@example.com" {
				t.Errorf("minted claims = %v", c)
			}
		}},
		{name: "opaque by introspection to mint", printed: `-H "authorization: Bearer $OPAQUE" GET /orders/42`, check: func(t *testing.T, out string) {
			c := upstreamClaims(t, out)
			if c["iss"] != "https://tokentailor.dev.internal" || c["aud"] != "orders-api" || c["sub"] != "alice" || c["tenant"] != "acme" {
				t.Errorf("minted claims = %v", c)
			}
		}},
		{name: "exchange", printed: `-H "authorization: Bearer $JWT" GET /inventory/7`, check: func(t *testing.T, out string) {
			c := upstreamClaims(t, out)
			act, _ := c["act"].(map[string]any)
			if c["iss"] != d.issuer || c["aud"] != "inventory-api" || c["scope"] != "inventory:read" || c["sub"] != "alice" || act["sub"] != devClientID {
				t.Errorf("exchanged claims = %v", c)
			}
			if exp := c["exp"].(float64); exp > jwtExp || exp > float64(time.Now().Add(devExchangeTTL+time.Second).Unix()) {
				t.Errorf("exchanged exp %v: beyond the subject's %v or the 5m cap", exp, jwtExp)
			}
			// The dev server vouches for what it issued.
			if a := introspect(t, d, c["raw"].(string)); a["active"] != true {
				t.Errorf("introspection of the exchanged token = %v", a)
			}
		}},
		{name: "missing scope", printed: `-H "authorization: Bearer $JWT" POST /orders`, wantExit: 3, check: func(t *testing.T, out string) {
			if !strings.Contains(out, `insufficient_scope`) {
				t.Errorf("want insufficient_scope:\n%s", out)
			}
		}},
		{name: "no token", printed: `GET /orders/42`, wantExit: 3, check: func(t *testing.T, out string) {
			if !strings.Contains(out, `"Unauthorized"`) {
				t.Errorf("want 401:\n%s", out)
			}
		}},
	}
	var printed []string
	for _, line := range d.requests {
		p := strings.TrimPrefix(line, "go run ./cmd/tokentailor request ")
		if f := strings.Fields(p); len(f) > 1 && f[0] == "-addr" {
			p = strings.TrimPrefix(p, "-addr "+f[1]+" ")
		}
		printed = append(printed, p)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := slices.Index(printed, tt.printed)
			if i < 0 {
				t.Fatalf("dev did not print %q; it printed %q", tt.printed, printed)
			}
			args := shellFields(t, d.requests[i], d.vars)[3:] // after "go run ./cmd/tokentailor"
			code, out := capture(t, args...)
			if code != tt.wantExit {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantExit, out)
			}
			tt.check(t, out)
		})
	}
	if len(printed) != len(tests) {
		t.Errorf("dev printed %d request commands, the test knows %d: %q", len(printed), len(tests), printed)
	}

	t.Run("dev token", func(t *testing.T) {
		inner, ok := strings.CutPrefix(d.tokenCmd, "TOKEN=$(")
		inner, ok2 := strings.CutSuffix(inner, ")")
		if !ok || !ok2 {
			t.Fatalf("unexpected dev token line %q", d.tokenCmd)
		}
		args := shellFields(t, inner, d.vars)
		if !slices.Equal(args[:5], []string{"go", "run", "./cmd/tokentailor", "dev", "token"}) {
			t.Fatalf("unexpected dev token command %q", args)
		}
		for _, opaque := range []bool{false, true} {
			a := slices.Clone(args[5:])
			if opaque {
				a = append(a, "-opaque")
			}
			var stdout, stderr bytes.Buffer
			if code := devTokenCmd(context.Background(), a, &stdout, &stderr); code != 0 {
				t.Fatalf("dev token %q: exit %d: %s", a, code, stderr.String())
			}
			tok := strings.TrimSpace(stdout.String())
			if opaque != strings.HasPrefix(tok, devOpaquePrefix) {
				t.Fatalf("opaque=%v, token %.10s…", opaque, tok)
			}
			// The printed token has orders:write: it may POST, and its claim
			// reaches the upstream through copy_claims on GET.
			addr := strings.Fields(strings.TrimPrefix(d.requests[0], "go run ./cmd/tokentailor request "))[1]
			if code, out := capture(t, "request", "-addr", addr, "-H", "authorization: Bearer "+tok, "POST", "/orders"); code != 0 {
				t.Fatalf("POST with the dev token: exit %d:\n%s", code, out)
			}
			code, out := capture(t, "request", "-addr", addr, "-H", "authorization: Bearer "+tok, "GET", "/orders/1")
			if c := upstreamClaims(t, out); code != 0 || c["tenant"] != "globex" || c["exp"].(float64) > float64(time.Now().Add(5*time.Minute+time.Second).Unix()) {
				t.Fatalf("GET with the dev token: exit %d, upstream claims %v", code, c)
			}
		}
	})
}

// introspect asks the dev server about tok with tokentailor's client, as the
// printed curl command does.
func introspect(t *testing.T, d *devRun, tok string) map[string]any {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(d.dir, "client-secret"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, d.issuer+devPathIntrospect, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(devClientID, strings.TrimSpace(string(secret)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a map[string]any
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDevTokenFlags(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantExit int
		wantErr  string
	}{
		{name: "zero ttl", args: []string{"-ttl", "0s"}, wantExit: 2, wantErr: "ttl 0s: want more than 0 and at most 24h"},
		{name: "ttl too long", args: []string{"-ttl", "48h"}, wantExit: 2, wantErr: "at most 24h"},
		{name: "ttl not a duration", args: []string{"-ttl", "5 minutes"}, wantExit: 2, wantErr: `invalid value "5 minutes" for flag -ttl`},
		{name: "claim without value", args: []string{"-claim", "tenant"}, wantExit: 2, wantErr: "want name=value"},
		{name: "registered claim", args: []string{"-claim", "exp=1"}, wantExit: 2, wantErr: `claim "exp": set it with -ttl`},
		{name: "scope claim", args: []string{"-claim", "scope=x"}, wantExit: 2, wantErr: `claim "scope": set it with -scope`},
		{name: "broken JSON claim", args: []string{"-claim", "groups=[a"}, wantExit: 2, wantErr: "looks like JSON"},
		{name: "bad scope", args: []string{"-scope", `a"b`}, wantExit: 2, wantErr: "RFC 6749"},
		{name: "empty subject", args: []string{"-sub", ""}, wantExit: 2, wantErr: "sub: want 1 to 256"},
		{name: "unknown flag", args: []string{"-scopes", "x"}, wantExit: 2, wantErr: "flag provided but not defined: -scopes"},
		{name: "stray argument", args: []string{"orders:read"}, wantExit: 2, wantErr: `unexpected argument "orders:read"`},
		{name: "no dev running", args: []string{"-dir", empty}, wantExit: 1, wantErr: "no running tokentailor dev found in " + empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := devTokenCmd(context.Background(), append([]string{"-dir", empty}, tt.args...), &stdout, &stderr)
			if code != tt.wantExit || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.wantExit, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing on an error", stdout.String())
			}
		})
	}
}

func TestDevTokenStaleState(t *testing.T) {
	tests := []struct {
		name    string
		state   string
		wantErr string
	}{
		{name: "server gone", state: `{"issue_url":"http://127.0.0.1:1/dev/tokens","secret":"s"}`, wantErr: "state file is stale"},
		{name: "not loopback", state: `{"issue_url":"http://example.com/dev/tokens","secret":"s"}`, wantErr: "names no loopback URL"},
		{name: "garbage", state: `{`, wantErr: "unreadable dev state file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, devStateFile), []byte(tt.state), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := devTokenCmd(context.Background(), []string{"-dir", dir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestDevFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "issuer off loopback", args: []string{"-issuer", "0.0.0.0:9092"}, wantErr: "loopback only"},
		{name: "issuer not an address", args: []string{"-issuer", "9092"}, wantErr: "-issuer:"},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
		{name: "unknown flag", args: []string{"-port", "1"}, wantErr: "flag provided but not defined: -port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runDev(context.Background(), append([]string{"-dir", t.TempDir()}, tt.args...), devIO{out: &out, errOut: &errOut})
			if code != 2 || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut.String(), tt.wantErr)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"/tmp/a": "/tmp/a", "/tmp/a b": "'/tmp/a b'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
