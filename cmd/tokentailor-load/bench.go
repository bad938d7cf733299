package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// benchOptions configures the whole comparison.
type benchOptions struct {
	load        loadOptions
	binary      string
	transports  []string
	distinct    int64
	cacheMax    int
	warmTokens  int
	coldES256   int
	coldRS256   int
	pin         bool
	keep        bool
	logLevel    string
	scenarioSet map[string]bool
	rounds      int
}

// Scenario names, in the order they run. "alternating" repeats floor and
// warm-jwt in turns (-rounds) and reports the median of their ratios.
var allScenarios = []string{"warm-jwt", "warm-opaque", "cold-rs256-eddsa", "cold-es256-es256", "alternating", "distinct"}

func benchCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o benchOptions
	loadFlags(fs, &o.load)
	fs.StringVar(&o.binary, "tokentailor", "", "tokentailor binary (default: go build ./cmd/tokentailor, run from the repository root)")
	transports := fs.String("transports", "tcp,unix", "transports to measure: tcp, unix or both")
	fs.Int64Var(&o.distinct, "distinct", 1_000_000, "distinct tokens for the memory scenario")
	fs.IntVar(&o.cacheMax, "cache-entries", config.DefaultMaxEntries, "cache.max_entries of the tokentailor under test")
	fs.IntVar(&o.warmTokens, "warm-tokens", 100, "distinct tokens in the warm pools")
	fs.IntVar(&o.coldES256, "cold-es256", 40_000, "pre-signed ES256 tokens per transport for the cold scenario (a run ends when they are used up)")
	fs.IntVar(&o.coldRS256, "cold-rs256", 12_000, "pre-signed RS256 tokens per transport for the cold scenario")
	fs.BoolVar(&o.pin, "pin", true, "pin the generator to CPU 0 and the servers to CPU 1 with taskset, when there are two CPUs and taskset")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, keys, server logs)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "tokentailor's log level during the bench")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the alternating floor / warm-jwt comparison (0 skips it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.transports = strings.Split(*transports, ",")
	o.scenarioSet = map[string]bool{}
	for _, s := range strings.Split(*scen, ",") {
		o.scenarioSet[strings.TrimSpace(s)] = true
	}
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// benchRun holds what a bench run shares between its steps.
type benchRun struct {
	o       benchOptions
	dir     string
	iss     *issuer
	pinSrv  []string // command prefix for servers ("taskset -c 1") or nil
	out     *table
	floors  map[string]*result
	targets map[string]string // transport → target of the server running now
	// introspection is appended inside the config's introspection map,
	// e.g. ", rate_limit: {per_second: 100}".
	introspection string
}

func bench(ctx context.Context, o benchOptions) error {
	dir, err := os.MkdirTemp("", "tokentailor-load-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Printf("work directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &benchRun{o: o, dir: dir, out: newTable(os.Stdout), floors: map[string]*result{}}
	if b.o.binary == "" {
		if b.o.binary, err = buildTokentailor(ctx, dir); err != nil {
			return err
		}
	}
	if b.iss, err = newIssuer(time.Now); err != nil {
		return err
	}
	if err := b.iss.start(); err != nil {
		return err
	}
	defer b.iss.stop()

	// Sign every pre-built token while both cores are still ours.
	fmt.Println("signing token pools …")
	pools, err := b.pools()
	if err != nil {
		return err
	}
	b.pinSrv = b.pinning()

	// The floor, once per transport.
	fmt.Printf("\nload: %d workers over %d connections, %s warm-up + %s per run; server GOMAXPROCS = its CPUs\n\n",
		o.load.Workers, o.load.Conns, o.load.Warmup, o.load.Duration)
	b.out.header()
	floor, err := b.startFloor(ctx)
	if err != nil {
		return err
	}
	for _, tr := range o.transports {
		src := &source{warm: []*authv3.CheckRequest{pools.warmJWT[0]}}
		res, err := b.measure(ctx, floor, tr, src, nil)
		if err != nil {
			floor.stop()
			return err
		}
		b.floors[tr] = res
		b.out.row(row{name: "floor", transport: tr, res: res, floor: res})
	}
	floor.stop()

	// tokentailor minting EdDSA: warm JWT, warm opaque, cold RS256 → EdDSA.
	if o.scenarioSet["warm-jwt"] || o.scenarioSet["warm-opaque"] || o.scenarioSet["cold-rs256-eddsa"] {
		tt, err := b.startTokentailor(ctx, "eddsa")
		if err != nil {
			return err
		}
		steps := []struct {
			name string
			src  func(tr int) *source
		}{
			{"warm-jwt", func(int) *source { return &source{warm: pools.warmJWT} }},
			{"warm-opaque", func(int) *source { return &source{warm: pools.warmOpaque} }},
			{"cold-rs256-eddsa", func(i int) *source { return &source{cold: pools.coldRS256[i]} }},
		}
		for _, s := range steps {
			if !o.scenarioSet[s.name] {
				continue
			}
			for i, tr := range o.transports {
				if err := b.scenario(ctx, tt, s.name, tr, s.src(i)); err != nil {
					tt.stop()
					return err
				}
			}
		}
		tt.stop()
	}
	if o.scenarioSet["cold-es256-es256"] {
		tt, err := b.startTokentailor(ctx, "es256")
		if err != nil {
			return err
		}
		for i, tr := range o.transports {
			if err := b.scenario(ctx, tt, "cold-es256-es256", tr, &source{cold: pools.coldES256[i]}); err != nil {
				tt.stop()
				return err
			}
		}
		tt.stop()
	}
	if o.scenarioSet["alternating"] && o.rounds > 0 {
		if err := b.alternating(ctx, pools); err != nil {
			return err
		}
	}
	if o.scenarioSet["distinct"] && o.distinct > 0 {
		if err := b.distinct(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("\nratios are to the floor over the same transport in this run; srv%%/gen%% = CPU use of server/generator during the run (100 = one core busy)\n")
	return nil
}

// buildTokentailor builds ./cmd/tokentailor into dir and returns its path.
func buildTokentailor(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "tokentailor")
	fmt.Println("building ./cmd/tokentailor …")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokentailor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building tokentailor (run from the repository root, or pass -tokentailor): %w", err)
	}
	return bin, nil
}

// alternating runs the floor and warm-jwt in turns, o.rounds times over each
// transport, with both servers up (only one is loaded at a time), so that a
// slow spell of a shared machine falls on both alike. It prints every round's
// ratios and their medians: the figures to hold against issue 6's warm
// targets (throughput ≥ 0.85 ×, p99 ≤ 1.5 × the floor's).
func (b *benchRun) alternating(ctx context.Context, pools *tokenPools) error {
	floor, err := b.startFloor(ctx)
	if err != nil {
		return err
	}
	defer floor.stop()
	tt, err := b.startTokentailor(ctx, "eddsa")
	if err != nil {
		return err
	}
	defer tt.stop()
	fmt.Printf("\nalternating floor and warm-jwt, %d rounds of %s each (ratios tokentailor / floor):\n", b.o.rounds, b.o.load.Duration)
	fmt.Printf("%-6s %-5s %10s %10s %8s %8s %8s\n", "via", "round", "floor r/s", "warm r/s", "×r/s", "×p99", "×CPU/rq")
	for _, tr := range b.o.transports {
		var rps, p99, cpu []float64
		for r := range b.o.rounds {
			f, err := b.measure(ctx, floor, tr, &source{warm: []*authv3.CheckRequest{pools.warmJWT[0]}}, nil)
			if err != nil {
				return fmt.Errorf("floor over %s: %w", tr, err)
			}
			w, err := b.measure(ctx, tt, tr, &source{warm: pools.warmJWT}, nil)
			if err != nil {
				return fmt.Errorf("warm-jwt over %s: %w", tr, err)
			}
			if w.Errors+w.Denied > 0 {
				return fmt.Errorf("warm-jwt over %s: %d errors, %d denials (%s)", tr, w.Errors, w.Denied, w.FirstError)
			}
			rps = append(rps, w.RPS()/f.RPS())
			p99 = append(p99, float64(w.Hist.Quantile(.99))/float64(f.Hist.Quantile(.99)))
			cpu = append(cpu, float64(w.CPUPerReq())/float64(f.CPUPerReq()))
			fmt.Printf("%-6s %-5d %10.0f %10.0f %8.2f %8.2f %8.2f\n", tr, r+1, f.RPS(), w.RPS(), rps[r], p99[r], cpu[r])
		}
		fmt.Printf("%-6s %-5s %10s %10s %8.2f %8.2f %8.2f\n", tr, "median", "", "", median(rps), median(p99), median(cpu))
	}
	return nil
}

// median returns the middle value of v (the mean of the two middle ones when
// len(v) is even), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// tokenPools are the pre-built requests of the scenarios.
type tokenPools struct {
	warmJWT, warmOpaque  []*authv3.CheckRequest
	coldES256, coldRS256 [][]*authv3.CheckRequest // one pool per transport
}

// pools signs every token the scenarios need, on all CPUs.
func (b *benchRun) pools() (*tokenPools, error) {
	o := b.o
	p := &tokenPools{}
	var err error
	if p.warmJWT, err = b.signPool("ES256", "warm", o.warmTokens); err != nil {
		return nil, err
	}
	for i := range o.warmTokens {
		p.warmOpaque = append(p.warmOpaque, checkRequest(opaque(i), i))
	}
	for _, tr := range o.transports {
		var es, rs []*authv3.CheckRequest
		if o.scenarioSet["cold-es256-es256"] {
			if es, err = b.signPool("ES256", "cold-"+tr, o.coldES256); err != nil {
				return nil, err
			}
		}
		if o.scenarioSet["cold-rs256-eddsa"] {
			if rs, err = b.signPool("RS256", "cold-"+tr, o.coldRS256); err != nil {
				return nil, err
			}
		}
		p.coldES256 = append(p.coldES256, es)
		p.coldRS256 = append(p.coldRS256, rs)
	}
	return p, nil
}

// signPool signs n tokens with alg in parallel and builds their requests.
func (b *benchRun) signPool(alg, prefix string, n int) ([]*authv3.CheckRequest, error) {
	out := make([]*authv3.CheckRequest, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(errs) {
				tok, err := b.iss.sign(alg, fmt.Sprintf("%s-%s-%d", prefix, alg, i))
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = checkRequest(tok, i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pinning pins this process to CPU 0 and returns the prefix that starts
// servers on CPU 1, when taskset exists and there are at least two CPUs.
func (b *benchRun) pinning() []string {
	ts, err := exec.LookPath("taskset")
	switch {
	case !b.o.pin:
		fmt.Println("pinning: off (-pin=false); generator and servers share every CPU")
		return nil
	case err != nil:
		fmt.Println("pinning: taskset not found; generator and servers share every CPU")
		return nil
	case runtime.NumCPU() < 2:
		fmt.Println("pinning: fewer than two CPUs; generator and servers share the CPU")
		return nil
	}
	self := exec.Command(ts, "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid()))
	if out, err := self.CombinedOutput(); err != nil {
		fmt.Printf("pinning: taskset failed (%v: %s); not pinned\n", err, strings.TrimSpace(string(out)))
		return nil
	}
	runtime.GOMAXPROCS(1)
	fmt.Println("pinning: generator on CPU 0 (GOMAXPROCS 1), servers on CPU 1 (taskset -c 1, GOMAXPROCS 1)")
	return []string{ts, "-c", "1"}
}

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
func (b *benchRun) startFloor(ctx context.Context) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	targets, err := b.targetsFor("floor")
	if err != nil {
		return nil, err
	}
	c, err := b.start("floor", []string{self, "floor", "-listen", targets["tcp"], "-listen", targets["unix"]}, targets)
	if err != nil {
		return nil, err
	}
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
func (b *benchRun) startTokentailor(ctx context.Context, kind string) (*child, error) {
	name := "tokentailor-" + kind
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
		"CacheMax": b.o.cacheMax, "Route": benchRoute, "Scope": benchScope, "Introspection": b.introspection,
	})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	c, err := b.start(name, []string{b.o.binary, "serve", "-config", cfgPath}, targets)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	hc := &http.Client{Timeout: time.Second}
	return c, c.waitUp(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: HTTP %d", resp.StatusCode)
		}
		return nil
	})
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

// measure runs one load against c over transport tr.
func (b *benchRun) measure(ctx context.Context, c *child, tr string, src *source, onMeasure func()) (*result, error) {
	target, ok := c.targets[tr]
	if !ok {
		return nil, fmt.Errorf("unknown transport %q (want tcp or unix)", tr)
	}
	o := b.o.load
	o.Target, o.PID, o.OnMeasure = target, c.cmd.Process.Pid, onMeasure
	return runLoad(ctx, o, src)
}

// scenario measures one scenario and prints its row.
func (b *benchRun) scenario(ctx context.Context, c *child, name, tr string, src *source) error {
	var calls int64
	res, err := b.measure(ctx, c, tr, src, func() { calls = b.iss.calls.Load() })
	if err != nil {
		return fmt.Errorf("%s over %s: %w", name, tr, err)
	}
	r := row{name: name, transport: tr, res: res, floor: b.floors[tr]}
	b.out.row(r)
	if n := b.iss.calls.Load() - calls; n > 0 && strings.HasPrefix(name, "warm") {
		fmt.Printf("  (%d introspection calls during %s: the warm-up did not prime every token, or cached answers expired)\n", n, name)
	}
	return nil
}
