package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// spread sends n fresh opaque tokens, each to every replica in turn (the
// first replica rotating with the token), 16 tokens at a time, as a load
// balancer spreads a client's requests; it returns what the issuer and
// Redis saw.
func (s *replicaSet) spread(ctx context.Context, rs []*child, n int) (delta, error) {
	clients := make([]authv3.AuthorizationClient, len(rs))
	for i, r := range rs {
		cc, err := dial(r.targets[s.o.transport])
		if err != nil {
			return delta{}, err
		}
		defer cc.Close()
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	before, err := s.snapshot(ctx, rs)
	if err != nil {
		return delta{}, err
	}
	var next, checks, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && ctx.Err() == nil; i = next.Add(1) - 1 {
				req := checkRequest(opaque(int(i)), int(i))
				for k := range clients {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					resp, err := clients[(int(i)+k)%len(clients)].Check(cctx, req)
					cancel()
					checks.Add(1)
					if err != nil || resp.GetStatus().GetCode() != 0 {
						failed.Add(1)
						first.CompareAndSwap(nil, fmt.Sprintf("%v %v", err, resp.GetDeniedResponse().GetStatus().GetCode()))
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return delta{}, err
	}
	if f := failed.Load(); f > 0 {
		return delta{}, fmt.Errorf("%d of %d Checks not allowed (first: %v)", f, checks.Load(), first.Load())
	}
	after, err := s.snapshot(ctx, rs)
	if err != nil {
		return delta{}, err
	}
	return diff(before, after, checks.Load()), nil
}

func (s *replicaSet) printSpread(without, with delta) bool {
	tokens := float64(s.o.distinct)
	fmt.Printf("\n%d distinct opaque tokens, each sent once to each of %d replicas (%d Checks, all allowed):\n",
		s.o.distinct, s.o.replicas, with.checks)
	fmt.Printf("  %-22s %14s %14s %16s\n", "", "issuer calls", "per token", "Redis trips/Check")
	fmt.Printf("  %-22s %14d %14.2f %16s\n", "without shared_cache", without.issuer, float64(without.issuer)/tokens, "-")
	fmt.Printf("  %-22s %14d %14.2f %16.2f\n", "with shared_cache", with.issuer, float64(with.issuer)/tokens, float64(with.trips)/float64(with.checks))
	ok := with.issuer == int64(s.o.distinct)
	fmt.Printf("  verdict: %s (with shared_cache: 1 call per distinct token; without: %d, one per replica)\n", passFail(ok), s.o.replicas)
	return ok
}

// coldFromRedis has replica a introspect s.o.cold fresh tokens, then sends
// each once to replica b (cold there: its local cache never saw it, Redis
// has the answer), then the same tokens again to b (warm), and returns
// both runs with what Redis and the issuer saw during each.
func (s *replicaSet) coldFromRedis(ctx context.Context, a, b *child) (cold, warm *measured, err error) {
	reqs := make([]*authv3.CheckRequest, s.o.cold)
	for i := range reqs {
		reqs[i] = checkRequest(opaque(1_000_000+i), i)
	}
	o := s.o.load
	o.Warmup, o.Duration = 0, time.Hour
	prime := o
	prime.Target = a.targets[s.o.transport]
	if _, err := runLoad(ctx, prime, &source{cold: append([]*authv3.CheckRequest(nil), reqs...)}); err != nil {
		return nil, nil, fmt.Errorf("priming on %s: %w", a.name, err)
	}
	o.Target, o.PID = b.targets[s.o.transport], b.cmd.Process.Pid
	if cold, err = s.measured(ctx, o, b, &source{cold: append([]*authv3.CheckRequest(nil), reqs...)}); err != nil {
		return nil, nil, fmt.Errorf("cold on %s: %w", b.name, err)
	}
	o.Duration = s.o.load.Duration
	if warm, err = s.measured(ctx, o, b, &source{warm: reqs}); err != nil {
		return nil, nil, fmt.Errorf("warm on %s: %w", b.name, err)
	}
	return cold, warm, nil
}

// measured is one run and the counters around it.
type measured struct {
	res *result
	d   delta
}

func (s *replicaSet) measured(ctx context.Context, o loadOptions, r *child, src *source) (*measured, error) {
	before, err := s.snapshot(ctx, []*child{r})
	if err != nil {
		return nil, err
	}
	res, err := runLoad(ctx, o, src)
	if err != nil {
		return nil, err
	}
	if res.Errors+res.Denied > 0 {
		return nil, fmt.Errorf("%d errors, %d denials (%s)", res.Errors, res.Denied, res.FirstError)
	}
	after, err := s.snapshot(ctx, []*child{r})
	if err != nil {
		return nil, err
	}
	return &measured{res: res, d: diff(before, after, int64(res.Requests))}, nil
}

func (s *replicaSet) printCold(cold, warm *measured) bool {
	per := func(n, of int64) float64 { return float64(n) / float64(max(of, 1)) }
	fmt.Printf("\ncold opaque Check served from Redis (%d tokens introspected by replica 0, each sent once to replica 1), then warm (the same tokens again):\n", s.o.cold)
	fmt.Printf("  %-6s %8s %10s %10s %12s %12s %14s %9s %9s\n", "", "Checks", "issuer", "trips/rq", "GET/rq", "commands/rq", "srvCPU/rq", "p50", "p99")
	for _, r := range []struct {
		name string
		m    *measured
	}{{"cold", cold}, {"warm", warm}} {
		d := r.m.d
		fmt.Printf("  %-6s %8d %10d %10.3f %12.3f %12.3f %14s %9s %9s\n", r.name, d.checks, d.issuer,
			per(d.trips, d.checks), per(d.commands["get"], d.checks), per(d.redisCommands(), d.checks),
			fmtDur(r.m.res.CPUPerReq()), fmtDur(r.m.res.Hist.Quantile(.5)), fmtDur(r.m.res.Hist.Quantile(.99)))
	}
	fmt.Printf("  Redis commands during the cold run: %s; keep-alive PINGs %d\n", fmtCommands(cold.d.commands), cold.d.pings)
	fmt.Printf("  (a shared-cache read is rueidis's DoCache: CLIENT CACHING, MULTI, PTTL, GET, EXEC in one pipelined write, one round trip)\n")
	over := per(cold.d.trips, cold.d.checks) - per(warm.d.trips, warm.d.checks)
	ok := over <= 1 && cold.d.issuer == 0 && per(cold.d.commands["get"], cold.d.checks) <= 1
	fmt.Printf("  verdict: %s (Redis round trips of a cold Check over the warm path: %.3f, target ≤ 1; issuer calls: %d, target 0)\n",
		passFail(ok), over, cold.d.issuer)
	return ok
}

func fmtCommands(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", strings.ToUpper(k), m[k]))
	}
	return strings.Join(parts, ", ")
}

// alternateWarm measures warm opaque Checks on a replica without
// shared_cache and on one with it, in turns, s.o.rounds times, and prints
// every round's ratios (with / without) and their medians.
func (s *replicaSet) alternateWarm(ctx context.Context, local, shared *child) (bool, error) {
	var pool []*authv3.CheckRequest
	for i := range s.o.warmTokens {
		pool = append(pool, checkRequest(opaque(2_000_000+i), i))
	}
	tr := s.o.transport
	turns := "one whole run after the other"
	if s.o.slice > 0 {
		n := turnsPerSide(s.o.load.Duration, s.o.slice)
		turns = fmt.Sprintf("in turns of %s, %d each (without, with, with, without, …)", s.o.load.Duration/time.Duration(n), n)
	}
	fmt.Printf("\nwarm opaque Check, %d tokens, without and with shared_cache, %d rounds of %s, %s (ratios with / without):\n",
		s.o.warmTokens, s.o.rounds, s.o.load.Duration, turns)
	fmt.Printf("  %-6s %11s %11s %7s %9s %9s %7s %11s %11s %8s %12s\n", "round", "without r/s", "with r/s", "×r/s",
		"p99 w/o", "p99 with", "×p99", "CPU/rq w/o", "CPU/rq with", "×CPU/rq", "Redis cmds")
	var rps, p99, cpu []float64
	var redisDuringWarm, checksWithShared int64
	// The bound below is checked over the whole of the rounds, warm-ups and
	// gaps included: the warm pool's tokens are fresh, first sent in the
	// first round's warm-up, after this.
	began := time.Now()
	first, err := s.snapshot(ctx, nil)
	if err != nil {
		return false, err
	}
	for r := range s.o.rounds {
		l, w, before, after, err := s.warmRound(ctx, local, shared, pool, tr, r)
		if err != nil {
			return false, err
		}
		cmds := diff(before, after, 0).redisCommands()
		redisDuringWarm += cmds
		checksWithShared += int64(w.Hist.Count())
		for _, x := range []*result{l, w} {
			if x.Errors+x.Denied > 0 {
				return false, fmt.Errorf("warm opaque: %d errors, %d denials (%s)", x.Errors, x.Denied, x.FirstError)
			}
		}
		rps = append(rps, w.RPS()/l.RPS())
		p99 = append(p99, float64(w.Hist.Quantile(.99))/float64(l.Hist.Quantile(.99)))
		cpu = append(cpu, float64(w.CPUPerReq())/float64(l.CPUPerReq()))
		fmt.Printf("  %-6d %11.0f %11.0f %7.2f %9s %9s %7.2f %11s %11s %8.2f %12d\n", r+1, l.RPS(), w.RPS(), rps[r],
			fmtDur(l.Hist.Quantile(.99)), fmtDur(w.Hist.Quantile(.99)), p99[r], fmtDur(l.CPUPerReq()), fmtDur(w.CPUPerReq()), cpu[r], cmds)
	}
	fmt.Printf("  %-6s %11s %11s %7.2f %9s %9s %7.2f %11s %11s %8.2f %12d\n", "median", "", "", median(rps), "", "", median(p99), "", "", median(cpu), redisDuringWarm)
	lh, _ := s.memMetrics(ctx, local.admin)
	wh, _ := s.memMetrics(ctx, shared.admin)
	fmt.Printf("  live heap after the rounds: without %.1f MiB, with %.1f MiB\n", float64(lh)/(1<<20), float64(wh)/(1<<20))
	// A warm Check is answered by the local layer. Redis sees a warm token
	// when it is first sent, and again only when its local copy reaches its
	// end (max_cache_ttl, or the token's exp): once per token and
	// max_cache_ttl. More than that means warm Checks go to Redis. (A bound
	// per Check would depend on how long the rounds run: whether a refresh
	// falls within them or not.)
	last, err := s.snapshot(ctx, nil)
	if err != nil {
		return false, err
	}
	total := diff(first, last, 0).redisCommands()
	// configTemplate sets no max_cache_ttl: the replicas run with the default.
	visits, bound := warmRedisBound(s.o.warmTokens, time.Since(began), config.DefaultMaxCacheTTL)
	ok := median(rps) >= 0.90 && median(cpu) <= 1.10 && total <= bound
	fmt.Printf("  verdict: %s (median throughput ≥ 0.90 × and CPU per Check ≤ 1.10 × without shared_cache; Redis commands over the whole rounds ≤ %d tokens × %d visits × %d = %d: %d, %d of them in the measured turns of %d Checks)\n",
		passFail(ok), s.o.warmTokens, visits, refreshCommands, bound, total, redisDuringWarm, checksWithShared)
	return ok, nil
}

// refreshCommands bounds the Redis commands of one warm token's visit to
// Redis, when it is first sent and each time its local copy ends: the
// shared entry has always ended by then (it is stored with the same end,
// from a clock read a moment later), so a visit is DoCache's read (CLIENT
// CACHING, MULTI, PTTL, GET, EXEC), an introspection and the write back
// (SET PX): 6 commands, and 2 to spare for a reconnect's handshake.
const refreshCommands = 8

// warmRedisBound returns how many times each of tokens warm tokens may go
// to Redis within elapsed (when first sent, and once per ttl, the local
// copy's longest life, after that) and the Redis commands that allows.
func warmRedisBound(tokens int, elapsed, ttl time.Duration) (visits, commands int64) {
	visits = 1 + int64(elapsed/ttl)
	return visits, int64(tokens) * refreshCommands * visits
}

// warmRound measures the replicas without (local) and with (shared)
// shared_cache, each sent pool over tr: in turns of -slice (interleaved), or
// with -slice 0 one whole run after the other, which goes first alternating
// with the round r. before and after are the Redis counters around the
// shared replica's load (around the whole round when in turns: the replica
// without shared_cache sends Redis nothing).
func (s *replicaSet) warmRound(ctx context.Context, local, shared *child, pool []*authv3.CheckRequest, tr string, r int) (l, w *result, before, after counts, err error) {
	if s.o.slice > 0 {
		var sides []side
		if sides, err = s.sides([]*child{local, shared}, []*source{{warm: pool}, {warm: pool}}, tr); err != nil {
			return nil, nil, before, after, err
		}
		var snapErr error
		var res []*result
		res, err = interleaved(ctx, sides, s.o.load.Duration, s.o.slice, func() { before, snapErr = s.snapshot(ctx, nil) })
		if err = errors.Join(err, snapErr); err != nil {
			return nil, nil, before, after, fmt.Errorf("warm rounds in turns: %w", err)
		}
		after, err = s.snapshot(ctx, nil)
		return res[0], res[1], before, after, err
	}
	withShared := func() (err error) {
		var snapErr error
		w, err = s.measure(ctx, shared, tr, &source{warm: pool}, func() { before, snapErr = s.snapshot(ctx, nil) })
		if err = errors.Join(err, snapErr); err != nil {
			return fmt.Errorf("with shared_cache: %w", err)
		}
		after, err = s.snapshot(ctx, nil)
		return err
	}
	without := func() (err error) {
		if l, err = s.measure(ctx, local, tr, &source{warm: pool}, nil); err != nil {
			return fmt.Errorf("without shared_cache: %w", err)
		}
		return nil
	}
	// Which goes first alternates too, so that neither always runs on the
	// heels of the other.
	steps := []func() error{without, withShared}
	if r%2 == 1 {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, before, after, err
		}
	}
	return l, w, before, after, nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
