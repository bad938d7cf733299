package sharedcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/sharedcache/redistest"
)

const baseConfig = `
listen: {grpc: "127.0.0.1:9191"}
issuers:
  - issuer: https://idp.test
    jwks_url: https://idp.test/jwks
    audiences: [api]
routes:
  - name: r
    require: {}
    upstream: {mode: forward}
`

func TestFromConfigWithoutBlockIsDisabled(t *testing.T) {
	c, err := config.Parse([]byte(baseConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := FromConfig(c, nil, nil)
	if sc != nil || err != nil {
		t.Errorf("FromConfig = %v, %v; want nil, nil", sc, err)
	}
}

func TestFromConfigRefusesAShortSecret(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("too-short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(baseConfig+"shared_cache: {addresses: 127.0.0.1:1, key_secret: {file: key}}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromConfig(c, nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("err = %v, want ErrInvalidOptions", err)
	}
}

// TestFromConfigOverTLSWithACL: a config naming files for the key secret,
// the ACL password and the CA reaches a real TLS redis-server as an ACL user.
func TestFromConfigOverTLSWithACL(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	srv := redistest.StartWith(t, redistest.Options{Config: "user default off\nuser tt on >pw-from-file ~tokentailor:* &tokentailor:* +@all\n", TLS: files})
	dir := t.TempDir()
	for name, content := range map[string]string{"key": string(testSecret) + "\n", "pw": "pw-from-file\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Parse([]byte(baseConfig+`
shared_cache:
  addresses: `+srv.Addr()+`
  username: tt
  password: {file: pw}
  tls: {ca_file: `+files.CA+`}
  key_secret: {file: key}
  timeout: 200ms
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := FromConfig(c, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	waitConnected(t, sc, 5*time.Second)
	ctx := context.Background()
	h := extauthz.TokenHash("configured")
	if err := sc.Set(ctx, KindReplay, "https://idp.test", h, []byte("seen"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := sc.Get(ctx, KindReplay, "https://idp.test", h); !ok || err != nil || string(v) != "seen" {
		t.Errorf("Get = %q %v %v", v, ok, err)
	}
}
