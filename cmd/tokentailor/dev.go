package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/mint"
	"github.com/tokentailor/tokentailor/extauthz/server"
)

//go:embed dev.yaml
var devTemplate string

// devIssuer is the built-in development authorization server: one fresh
// Ed25519 key, its JWKS served on the admin listener under /dev.
type devIssuer struct {
	url  string
	key  ed25519.PrivateKey
	kid  string
	jwks []byte
}

func newDevIssuer(url string) (*devIssuer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	kid, err := mint.Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub), "kid": kid, "alg": "EdDSA", "use": "sig",
	}}})
	if err != nil {
		return nil, err
	}
	return &devIssuer{url: url, key: priv, kid: kid, jwks: jwks}, nil
}

func (d *devIssuer) sign(sub, scope string, ttl time.Duration) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": d.url, "sub": sub, "aud": "api.example.com", "scope": scope, "client_id": "dev-client",
		"email": sub + "@example.com", "tenant": "acme", "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		"jti": fmt.Sprintf("%x", now.UnixNano()),
	})
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = d.kid
	return t.SignedString(d.key)
}

func devCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	grpcAddr := fs.String("grpc", "127.0.0.1:9191", "gRPC ext_authz address")
	admin := fs.String("admin", "127.0.0.1:9090", "admin HTTP address (JWKS, metrics, dev issuer)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, err := os.MkdirTemp("", "tokentailor-dev-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokentailor dev:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	issuer, err := newDevIssuer("http://" + *admin + "/dev")
	if err == nil {
		err = writeDevFiles(dir, *grpcAddr, *admin, issuer.url)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokentailor dev:", err)
		return 1
	}
	opts := server.Options{
		ConfigPath:  filepath.Join(dir, "config.yaml"),
		TuneRuntime: true,
		AdminMux: func(mux *http.ServeMux) {
			mux.HandleFunc("GET /dev/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/jwk-set+json")
				_, _ = w.Write(issuer.jwks)
			})
		},
	}
	return serve(ctx, opts, func(*server.Server) {
		reader, err1 := issuer.sign("alice", "orders:read", time.Hour)
		writer, err2 := issuer.sign("bob", "orders:read orders:write", time.Hour)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "tokentailor dev: signing sample tokens:", err1, err2)
			return
		}
		fmt.Printf(`
tokentailor dev is running (config: %s)
  ext_authz gRPC  %s
  JWKS of minted  http://%s/.well-known/jwks.json
  dev issuer      %s (its keys: %s/jwks.json)

Sample tokens from the dev issuer (valid 1h):
  READER=%s
  WRITER=%s

Try a Check as Envoy would send it:
  go run ./cmd/tokentailor request -addr %s -H "authorization: Bearer $READER" GET /orders/42
  go run ./cmd/tokentailor request -addr %s -H "authorization: Bearer $READER" POST /orders   # 403 insufficient_scope
  go run ./cmd/tokentailor request -addr %s GET /orders                                       # 401
  go run ./cmd/tokentailor request -addr %s GET /docs/intro                                   # public

`, opts.ConfigPath, *grpcAddr, *admin, issuer.url, issuer.url, reader, writer, *grpcAddr, *grpcAddr, *grpcAddr, *grpcAddr)
	})
}

// writeDevFiles writes a fresh Ed25519 signing key and the dev config into dir.
func writeDevFiles(dir, grpcAddr, admin, issuer string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "signing.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	var buf bytes.Buffer
	tmpl := template.Must(template.New("dev").Parse(devTemplate))
	if err := tmpl.Execute(&buf, map[string]string{"GRPC": grpcAddr, "Admin": admin, "Dir": dir, "Issuer": issuer}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.yaml"), buf.Bytes(), 0o600)
}
