package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/server"
)

// benchOptions configures the whole comparison.
type benchOptions struct {
	load         loadOptions
	binary       string
	transports   []string
	distinct     int64
	cacheMax     int
	warmTokens   int
	coldPool     int
	coldDuration time.Duration
	coldRounds   int
	pin          bool
	keep         bool
	logLevel     string
	scenarioSet  map[string]bool
	rounds       int
	slice        time.Duration
	baseline     string
	profile      string
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
	fs.IntVar(&o.coldPool, "cold-pool", 0, "pre-signed tokens of each cold scenario, sent round and round (default 3 × -cache-entries: each comes back after its cache entry was shed)")
	fs.DurationVar(&o.coldDuration, "cold-duration", minColdDuration, "measured time of each cold run, after the caches are full (issue 14's target asks for ≥ 10s)")
	fs.IntVar(&o.coldRounds, "cold-rounds", 3, "rounds of each cold scenario per transport, each with its own crypto timing and floor; the verdict is their median")
	fs.BoolVar(&o.pin, "pin", true, "pin the generator to CPU 0 and the servers to CPU 1 with taskset, when there are two CPUs and taskset")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, keys, server logs)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "tokentailor's log level during the bench")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the alternating floor / warm-jwt comparison (0 skips it)")
	fs.DurationVar(&o.slice, "slice", 100*time.Millisecond, "length of the turns floor and warm-jwt take within each alternating round, in the order floor, warm-jwt, warm-jwt, floor, … (0: the floor's whole run, then warm-jwt's)")
	fs.StringVar(&o.baseline, "baseline", "", "a second tokentailor binary (say, the build before a change) that takes turns with the floor and -tokentailor in the alternating rounds, which then also print tokentailor / baseline")
	fs.StringVar(&o.profile, "profile", "", "directory to write the CPU profile of each scenario's server into (SCENARIO-VIA.pprof, floor-VIA.pprof for the floor), taken over the measured run from its pprof listener")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := checkSlice(o.slice); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	o.transports = strings.Split(*transports, ",")
	if o.coldPool == 0 {
		o.coldPool = 3 * o.cacheMax
	}
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
	// floorRT is the floor's runtime line, which tokentailor's must match.
	floorRT string
	// floor stays up for the whole run (idle while tokentailor is loaded),
	// so that cold and alternating measure it again beside tokentailor;
	// floorSource is what it is loaded with.
	floor       *child
	floorSource *source
}

func bench(ctx context.Context, o benchOptions) error {
	dir, done, err := workDir(ctx, "tokentailor-load-", o.keep, &o.binary)
	if err != nil {
		return err
	}
	defer done()
	b := &benchRun{o: o, dir: dir, out: newTable(os.Stdout), floors: map[string]*result{}}
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
	if b.floor, err = b.startFloor(ctx); err != nil {
		return err
	}
	defer b.floor.stop()
	b.floorSource = &source{warm: []*authv3.CheckRequest{pools.warmJWT[0]}}
	for _, tr := range o.transports {
		prof := b.profiler(ctx, b.floor, "floor", tr)
		res, err := b.measure(ctx, b.floor, tr, b.floorSource, prof.start)
		if perr := prof.wait(); err == nil && perr != nil {
			err = perr
		}
		if err != nil {
			return err
		}
		b.floors[tr] = res
		b.out.row(row{name: "floor", transport: tr, res: res, floor: res})
	}

	// tokentailor minting EdDSA: warm JWT, warm opaque, cold RS256 → EdDSA.
	if o.scenarioSet["warm-jwt"] || o.scenarioSet["warm-opaque"] || o.scenarioSet["cold-rs256-eddsa"] {
		tt, err := b.startTokentailor(ctx, "eddsa")
		if err != nil {
			return err
		}
		for _, s := range []struct {
			name string
			warm []*authv3.CheckRequest
		}{{"warm-jwt", pools.warmJWT}, {"warm-opaque", pools.warmOpaque}} {
			if !o.scenarioSet[s.name] {
				continue
			}
			for _, tr := range o.transports {
				if err := b.scenario(ctx, tt, s.name, tr, &source{warm: s.warm}); err != nil {
					tt.stop()
					return err
				}
			}
		}
		if o.scenarioSet["cold-rs256-eddsa"] {
			if err := b.cold(ctx, tt, "cold-rs256-eddsa", "RS256", "eddsa", pools.coldRS256); err != nil {
				tt.stop()
				return err
			}
		}
		tt.stop()
	}
	if o.scenarioSet["cold-es256-es256"] {
		tt, err := b.startTokentailor(ctx, "es256")
		if err != nil {
			return err
		}
		err = b.cold(ctx, tt, "cold-es256-es256", "ES256", "es256", pools.coldES256)
		tt.stop()
		if err != nil {
			return err
		}
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

// workDir makes a scenario's work directory (named prefix…) and, when
// *binary is empty, builds tokentailor into it and sets *binary. done
// removes the directory, unless keep: then its path is printed and kept.
func workDir(ctx context.Context, prefix string, keep bool, binary *string) (dir string, done func(), err error) {
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", nil, err
	}
	done = func() { _ = os.RemoveAll(dir) }
	if keep {
		fmt.Printf("work directory: %s\n", dir)
		done = func() {}
	}
	if *binary == "" {
		if *binary, err = buildTokentailor(ctx, dir); err != nil {
			done()
			return "", nil, err
		}
	}
	return dir, done, nil
}

// buildTokentailor builds ./cmd/tokentailor into dir and returns its path,
// with the build tag vtprotobuf when this binary (the floor) has it, so
// both marshal their answers alike.
func buildTokentailor(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "tokentailor")
	args := []string{"build", "-o", bin}
	if server.FastMarshal() {
		args = append(args, "-tags", fastMarshalTag)
	}
	fmt.Printf("building ./cmd/tokentailor (%s) …\n", strings.Join(args, " "))
	build := exec.CommandContext(ctx, "go", append(args, "./cmd/tokentailor")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building tokentailor (run from the repository root, or pass -tokentailor): %w", err)
	}
	return bin, nil
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
	prof := b.profiler(ctx, c, name, tr)
	res, err := b.measure(ctx, c, tr, src, func() { calls = b.iss.calls.Load(); prof.start() })
	if perr := prof.wait(); err == nil && perr != nil {
		err = perr
	}
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
