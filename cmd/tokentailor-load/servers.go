package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// child is a server process started by the bench.
type child struct {
	name    string
	cmd     *exec.Cmd
	log     string
	targets map[string]string // transport → target
	admin   string
	done    chan struct{}
}

// start runs argv (with the pinning prefix) and logs its output to a file.
func (b *benchRun) start(name string, argv []string, targets map[string]string) (*child, error) {
	argv = append(append([]string(nil), b.pinSrv...), argv...)
	logPath := filepath.Join(b.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	c := &child{name: name, cmd: cmd, log: logPath, targets: targets, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(c.done) }()
	return c, nil
}

// stop ends the child with SIGTERM, then SIGKILL after 10 seconds.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitUp waits until ready succeeds or the child exits.
func (c *child) waitUp(ctx context.Context, ready func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited before it was ready; see %s", c.name, c.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("%s not ready after 30s (%v); see %s", c.name, err, c.log)
		}
	}
}

// freePort returns a loopback port free right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (b *benchRun) targetsFor(name string) (map[string]string, error) {
	tcp, err := freePort()
	if err != nil {
		return nil, err
	}
	return map[string]string{"tcp": tcp, "unix": "unix://" + filepath.Join(b.dir, name+".sock")}, nil
}

// startFloor starts this binary's floor on both transports.
func (b *benchRun) startFloor(ctx context.Context) (c *child, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	targets, err := b.targetsFor("floor")
	if err != nil {
		return nil, err
	}
	// The floor runs with the runtime settings tokentailor applies by
	// default (runtime.gc_percent, runtime.memory_limit: auto for this
	// run's cache bound); GOMAXPROCS is the same for both, set by the Go
	// runtime from the CPUs each may use (the same taskset prefix).
	rt, err := b.runtimeFlags()
	if err != nil {
		return nil, err
	}
	argv := append([]string{self, "floor", "-listen", targets["tcp"], "-listen", targets["unix"]}, rt...)
	var admin string
	if b.o.profile != "" {
		// Profiled like tokentailor (-profile), through a pprof listener.
		if admin, err = freePort(); err != nil {
			return nil, err
		}
		argv = append(argv, "-pprof", admin)
	}
	c, err = b.start("floor", argv, targets)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	defer func() {
		if err == nil {
			var rt string
			if rt, err = floorRuntime(c.log); err == nil {
				b.noteRuntime("floor", rt)
			} else {
				c.stop()
			}
		}
	}()
	return c, c.waitUp(ctx, func() error {
		for _, t := range targets {
			network, addr := "tcp", t
			if p, ok := unixPath(t); ok {
				network, addr = "unix", p
			}
			conn, err := net.DialTimeout(network, addr, time.Second)
			if err != nil {
				return err
			}
			conn.Close()
		}
		return nil
	})
}

// runtimeFlags are the floor's (and the crypto sub-mode's) flags for the
// runtime settings tokentailor applies by default.
func (b *benchRun) runtimeFlags() ([]string, error) {
	limit, err := config.Runtime{MemoryLimit: "auto"}.Limit(b.o.cacheMax)
	if err != nil {
		return nil, err
	}
	return []string{"-gc-percent", strconv.Itoa(config.DefaultGCPercent), "-memory-limit", strconv.FormatInt(limit, 10)}, nil
}

const configTemplate = `# written by tokentailor-load bench
listen:
  grpc: {{.TCP}}
  socket: {{.Socket}}
  admin: {{.Admin}}
  pprof: true
log: {level: {{.Level}}, format: json}
mint:
  issuer: https://tokentailor.bench.internal
  keys: [{file: {{.Key}}}]
issuers:
  - issuer: {{.Issuer}}
    jwks_url: {{.Issuer}}/jwks.json
    audiences: [{{.Audience}}]
    algorithms: [RS256, ES256, EdDSA]
    required_typ: at+jwt
    introspection: {endpoint: {{.Issuer}}/introspect{{.Introspection}}}
    client: {id: {{.ClientID}}, secret: {file: {{.Secret}}}}
cache: {max_entries: {{.CacheMax}}}
routes:
  - name: {{.Route}}
    match: {path_prefix: /orders, methods: [GET, HEAD]}
    require: {scopes: [{{.Scope}}]}
    upstream:
      audience: orders-api
      scopes: [{{.Scope}}]
      copy_claims: {email: "", tenant: ""}
      ttl: 2m
`

// startTokentailor writes a config whose mint key is of kind (eddsa or
// es256), starts tokentailor on it and waits until /readyz answers 200.
func (b *benchRun) startTokentailor(ctx context.Context, kind string) (c *child, err error) {
	return b.startBinary(ctx, b.o.binary, "tokentailor-"+kind, kind)
}

// startBinary is startTokentailor for the tokentailor binary given, under
// name (its files and log lines).
func (b *benchRun) startBinary(ctx context.Context, binary, name, kind string) (c *child, err error) {
	if c, err = b.startServeBinary(ctx, binary, name, kind, b.o.cacheMax, b.introspection, ""); err != nil {
		return nil, err
	}
	rt, err := serverRuntime(ctx, c.admin, binary)
	if err != nil {
		c.stop()
		return nil, err
	}
	b.noteRuntime(name, rt)
	return c, nil
}

// startServe writes configTemplate for name (mint key of kind, caches of
// cacheMax entries, introspection inside the issuer's introspection map,
// then extra), starts tokentailor on it and waits until /readyz answers 200.
func (b *benchRun) startServe(ctx context.Context, name, kind string, cacheMax int, introspection, extra string) (*child, error) {
	return b.startServeBinary(ctx, b.o.binary, name, kind, cacheMax, introspection, extra)
}

// startServeBinary is startServe for the tokentailor binary given.
func (b *benchRun) startServeBinary(ctx context.Context, binary, name, kind string, cacheMax int, introspection, extra string) (*child, error) {
	keyPath := filepath.Join(b.dir, name+".pem")
	if err := writeKey(keyPath, kind); err != nil {
		return nil, err
	}
	secret := filepath.Join(b.dir, "client-secret")
	if err := os.WriteFile(secret, []byte(benchSecret+"\n"), 0o600); err != nil {
		return nil, err
	}
	targets, err := b.targetsFor(name)
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	sock, _ := unixPath(targets["unix"])
	var cfg strings.Builder
	err = template.Must(template.New("cfg").Parse(configTemplate)).Execute(&cfg, map[string]any{
		"TCP": targets["tcp"], "Socket": sock, "Admin": admin, "Level": b.o.logLevel, "Key": keyPath,
		"Issuer": b.iss.url, "Audience": benchAudience, "ClientID": benchClientID, "Secret": secret,
		"CacheMax": cacheMax, "Route": benchRoute, "Scope": benchScope, "Introspection": introspection,
	})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()+extra), 0o600); err != nil {
		return nil, err
	}
	c, err := b.start(name, []string{binary, "serve", "-config", cfgPath}, targets)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	return c, c.waitUp(ctx, func() error { return httpOK(ctx, "http://"+admin+"/readyz") })
}

// httpOK GETs url and wants 200.
func httpOK(ctx context.Context, url string) error {
	body, err := getOK(ctx, &http.Client{Timeout: time.Second}, url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, body)
	return body.Close()
}

// getOK GETs url with client and returns the body of a 200 answer, which the
// caller closes; any other status is an error.
func getOK(ctx context.Context, client *http.Client, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return resp.Body, nil
}

// writeKey writes a fresh PKCS#8 signing key: Ed25519 or P-256.
func writeKey(path, kind string) error {
	var key any
	var err error
	switch kind {
	case "eddsa":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "es256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return fmt.Errorf("unknown key kind %q", kind)
	}
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
