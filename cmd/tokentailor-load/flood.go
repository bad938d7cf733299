package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// floodOptions configures the flood scenario (issue 11).
type floodOptions struct {
	binary    string
	streams   int
	conns     int
	legitRate float64
	warmup    time.Duration
	duration  time.Duration
	delay     time.Duration
	perSecond float64
	burst     int
	envoyFile string
	transport string
	logLevel  string
	keep      bool
	phases    []string
}

// Flood phases: what the attacker's tokens look like.
const (
	// phaseRandom sends random opaque strings, as a scanner would: the
	// target of issue 11 is read off this phase.
	phaseRandom = "random"
	// phaseShaped sends made-up tokens of the issuer's exact shape: the
	// shape check cannot refuse them and the rate limit is all that is left.
	phaseShaped = "shaped"
)

// floodCmd runs the flood scenario: streams attackers send never-seen
// opaque tokens while new legitimate opaque tokens arrive at legitRate, all
// through one tokentailor whose issuer takes delay to introspect.
func floodCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	var o floodOptions
	fs.StringVar(&o.binary, "tokentailor", "", "tokentailor binary (default: go build ./cmd/tokentailor, run from the repository root)")
	fs.IntVar(&o.streams, "streams", 2000, "concurrent attacker streams")
	fs.IntVar(&o.conns, "conns", 4, "gRPC connections, shared by attackers and legitimate requests as Envoy shares its own")
	fs.Float64Var(&o.legitRate, "legit-rate", 20, "new legitimate opaque tokens per second")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "flood before measuring")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each phase")
	fs.DurationVar(&o.delay, "issuer-delay", 50*time.Millisecond, "how long the issuer takes to answer an introspection")
	fs.Float64Var(&o.perSecond, "rate", config.DefaultIntrospectionRate, "introspection.rate_limit.per_second of the tokentailor under test")
	fs.IntVar(&o.burst, "burst", 0, "introspection.rate_limit.burst (0: the rate rounded up, the config default)")
	fs.StringVar(&o.envoyFile, "envoy-config", "", "Envoy bootstrap whose ext_authz timeout is the deadline (default: the embedded envoy/sidecar.yaml)")
	fs.StringVar(&o.transport, "transport", "unix", "tcp or unix")
	fs.StringVar(&o.logLevel, "log-level", "info", "tokentailor's log level (info shows what the deny-log sampler saves)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (config, server log)")
	phases := fs.String("phases", phaseRandom+","+phaseShaped, "phases to run: random, shaped")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, p := range strings.Split(*phases, ",") {
		p = strings.TrimSpace(p)
		if p != phaseRandom && p != phaseShaped {
			fmt.Fprintf(os.Stderr, "flood: unknown phase %q\n", p)
			return 2
		}
		o.phases = append(o.phases, p)
	}
	if o.burst == 0 {
		o.burst = int(math.Ceil(o.perSecond))
	}
	ok, err := flood(ctx, o)
	return verdictExit("flood", ok, err)
}

// floodResult is what one phase measured.
type floodResult struct {
	legitSent, legitAllowed, legitLate, legitDenied, legitErrors int64
	legitFirstDenial                                             string
	legitHist                                                    Histogram
	attackSent, attack401, attack503, attackErrors               int64
	elapsed                                                      time.Duration
	calls                                                        int64 // introspection calls while measuring
	peakCalls                                                    int64 // most calls in any 1 s window
	logBytes                                                     int64
	// serverCPU and genCPU are the CPU time tokentailor and this process
	// (attackers, legitimate clients and the issuer double) used while
	// measuring: on a shared machine, what each actually got.
	serverCPU, genCPU time.Duration
}

func flood(ctx context.Context, o floodOptions) (bool, error) {
	timeout, from, err := envoyTimeout(o.envoyFile)
	if err != nil {
		return false, err
	}
	dir, done, err := workDir(ctx, "tokentailor-flood-", o.keep, &o.binary)
	if err != nil {
		return false, err
	}
	defer done()
	iss, err := newIssuer(time.Now)
	if err != nil {
		return false, err
	}
	iss.delay, iss.strict = o.delay, true
	if err := iss.start(); err != nil {
		return false, err
	}
	defer iss.stop()
	b := &benchRun{
		o:   benchOptions{binary: o.binary, cacheMax: config.DefaultMaxEntries, logLevel: o.logLevel, keep: o.keep},
		dir: dir, iss: iss,
		introspection: fmt.Sprintf(", rate_limit: {per_second: %g, burst: %d}, token_shape: {prefix: %q, alphabet: base64url, min_length: %d, max_length: %d}",
			o.perSecond, o.burst, opaquePrefix, opaqueLen, opaqueLen),
	}
	fmt.Printf("flood: %d attacker streams and %.0f new legitimate opaque tokens/s over %d %s connections; issuer answers in %s;\n"+
		"deadline %s (the ext_authz timeout of %s); rate_limit %g/s burst %d; token_shape %s + %d base64url\n",
		o.streams, o.legitRate, o.conns, o.transport, o.delay, timeout, from, o.perSecond, o.burst, opaquePrefix, opaqueLen-len(opaquePrefix))
	allOK := true
	for _, phase := range o.phases {
		// A fresh tokentailor per phase: empty caches and a full bucket.
		tt, err := b.startTokentailor(ctx, "eddsa")
		if err != nil {
			return false, err
		}
		res, err := floodPhase(ctx, o, tt, iss, phase, timeout)
		tt.stop()
		if err != nil {
			return false, fmt.Errorf("phase %s: %w", phase, err)
		}
		allOK = printFlood(o, phase, timeout, res) && allOK
	}
	return allOK, nil
}

// floodPhase floods tt for o.warmup + o.duration and measures the
// legitimate tokens and the issuer's calls during o.duration.
func floodPhase(ctx context.Context, o floodOptions, tt *child, is *issuer, phase string, timeout time.Duration) (*floodResult, error) {
	target, ok := tt.targets[o.transport]
	if !ok {
		return nil, fmt.Errorf("unknown transport %q", o.transport)
	}
	clients, closeAll, err := dialClients(target, o.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	attackToken := func() string { return randomToken("") }
	if phase == phaseShaped {
		attackToken = func() string { return randomToken(opaquePrefix) }
	}
	res := &floodResult{}
	var measuring, stop atomic.Bool
	var wg sync.WaitGroup
	for w := range o.streams {
		wg.Go(func() {
			res.attackStream(ctx, clients[w%len(clients)], w, attackToken, timeout, &measuring, &stop)
		})
	}
	select {
	case <-time.After(o.warmup):
	case <-ctx.Done():
	}

	// Measure: legitimate tokens at legitRate, issuer calls every 100 ms.
	logBefore := fileSize(tt.log)
	srvBefore, err := readProc(tt.cmd.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("reading server CPU: %w", err)
	}
	genBefore := selfCPU()
	measuring.Store(true)
	start, callsBefore := time.Now(), is.calls.Load()
	samples := []int64{callsBefore}
	var legit sync.WaitGroup
	var mu sync.Mutex
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.legitRate))
	sample := time.NewTicker(100 * time.Millisecond)
	end := time.After(o.duration)
	seq := 0
loop:
	for {
		select {
		case <-tick.C:
			seq++
			c, n := clients[seq%len(clients)], seq
			legit.Go(func() {
				tok := is.issueOpaque()
				cctx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				resp, err := c.Check(cctx, checkRequest(tok, n))
				took := time.Since(t0)
				cancel()
				mu.Lock()
				defer mu.Unlock()
				res.legitDone(resp, err, took, timeout)
			})
		case <-sample.C:
			samples = append(samples, is.calls.Load())
		case <-end:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	tick.Stop()
	sample.Stop()
	samples = append(samples, is.calls.Load())
	res.elapsed = time.Since(start)
	res.genCPU = selfCPU() - genBefore
	if after, err := readProc(tt.cmd.Process.Pid); err == nil {
		res.serverCPU = after.CPU - srvBefore.CPU
	}
	res.calls = samples[len(samples)-1] - callsBefore
	for i := range samples {
		j := min(i+10, len(samples)-1)
		res.peakCalls = max(res.peakCalls, samples[j]-samples[i])
	}
	legit.Wait()
	measuring.Store(false)
	stop.Store(true)
	wg.Wait()
	res.logBytes = fileSize(tt.log) - logBefore
	return res, ctx.Err()
}

// dialClients opens n gRPC connections to target; closeAll closes them.
func dialClients(target string, n int) (clients []authv3.AuthorizationClient, closeAll func(), err error) {
	var conns []*grpc.ClientConn
	closeAll = func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	for range n {
		cc, err := dial(target)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, cc)
		clients = append(clients, authv3.NewAuthorizationClient(cc))
	}
	return clients, closeAll, nil
}

// attackStream is one attacker: Checks with a new made-up token each time
// until stop, counted while measuring. One request per stream, its token
// replaced each time: the generator's CPU goes to sending, not to building
// maps.
func (res *floodResult) attackStream(ctx context.Context, c authv3.AuthorizationClient, w int, next func() string, timeout time.Duration, measuring, stop *atomic.Bool) {
	req := checkRequest("-", w)
	headers := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	for !stop.Load() && ctx.Err() == nil {
		headers["authorization"] = "Bearer " + next()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := c.Check(cctx, req)
		cancel()
		if !measuring.Load() {
			continue
		}
		atomic.AddInt64(&res.attackSent, 1)
		switch code := resp.GetDeniedResponse().GetStatus().GetCode(); {
		case err != nil:
			atomic.AddInt64(&res.attackErrors, 1)
		case code == 401:
			atomic.AddInt64(&res.attack401, 1)
		case code == 503:
			atomic.AddInt64(&res.attack503, 1)
		}
	}
}

// legitDone counts one legitimate Check's outcome; the caller holds the
// result's lock.
func (res *floodResult) legitDone(resp *authv3.CheckResponse, err error, took, timeout time.Duration) {
	res.legitSent++
	res.legitHist.Record(took)
	switch {
	case status.Code(err) == codes.DeadlineExceeded:
		res.legitLate++
	case err != nil:
		res.legitErrors++
	case resp.GetStatus().GetCode() != 0:
		res.legitDenied++
		if res.legitFirstDenial == "" {
			res.legitFirstDenial = fmt.Sprintf("HTTP %d", resp.GetDeniedResponse().GetStatus().GetCode())
		}
	case took > timeout:
		res.legitLate++
	default:
		res.legitAllowed++
	}
}

// printFlood prints one phase's figures and verdict, and reports whether
// the phase met its target.
func printFlood(o floodOptions, phase string, timeout time.Duration, r *floodResult) bool {
	secs := r.elapsed.Seconds()
	pct := func(n, of int64) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	fmt.Printf("\nphase %s (%s measured):\n", phase, r.elapsed.Round(time.Millisecond))
	fmt.Printf("  attacker: %d checks (%.0f/s): %d × 401, %d × 503, %d errors\n",
		r.attackSent, float64(r.attackSent)/secs, r.attack401, r.attack503, r.attackErrors)
	fmt.Printf("  legitimate new tokens: %d sent, %d allowed within %s (%.1f %%), %d late, %d denied (first: %s), %d errors; p50 %s p99 %s max %s\n",
		r.legitSent, r.legitAllowed, timeout, pct(r.legitAllowed, r.legitSent), r.legitLate, r.legitDenied, orDash(r.legitFirstDenial), r.legitErrors,
		fmtDur(r.legitHist.Quantile(.5)), fmtDur(r.legitHist.Quantile(.99)), fmtDur(r.legitHist.Max()))
	rate := float64(r.calls) / secs
	fmt.Printf("  issuer: %d introspection calls, %.1f/s on average, at most %d in any 1 s (limit %g/s, burst %d)\n",
		r.calls, rate, r.peakCalls, o.perSecond, o.burst)
	fmt.Printf("  server log: %d bytes (%.0f B/s); CPU used: tokentailor %.0f %%, generator + issuer double %.0f %% (100 = one core)\n",
		r.logBytes, float64(r.logBytes)/secs, 100*r.serverCPU.Seconds()/secs, 100*r.genCPU.Seconds()/secs)
	// Calls stay under the rate when the average does (with the burst spread
	// over the run) and no second exceeds rate + burst.
	underRate := rate <= o.perSecond+float64(o.burst)/secs && float64(r.peakCalls) <= o.perSecond+float64(o.burst)
	legitOK := r.legitSent > 0 && pct(r.legitAllowed, r.legitSent) >= 99
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	switch phase {
	case phaseRandom:
		fmt.Printf("  verdict: %s (legitimate allowed within the deadline ≥ 99 %%: %s; issuer calls under the rate: %s)\n",
			verdict(legitOK && underRate), verdict(legitOK), verdict(underRate))
		return legitOK && underRate
	default:
		// Made-up tokens of the issuer's own shape cannot be told from new
		// real ones without asking the issuer: the limit protects the
		// issuer, and new tokens share the bucket with the flood.
		fmt.Printf("  verdict: %s (issuer calls under the rate; legitimate tokens share the bucket with tokens of their own shape, no target)\n",
			verdict(underRate))
		return underRate
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// fileSize returns the size of path, 0 when it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
