package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// minColdDuration is the sustained load issue 14's cold target asks for.
const minColdDuration = 10 * time.Second

// cryptoDuration is how long the crypto sub-mode times its loop.
const cryptoDuration = 3 * time.Second

// cold runs a cold scenario on tt over every transport, in -cold-rounds
// rounds. Each round measures, over the same seconds so that the VM's drift
// falls on all three (coldRound says how): the cryptography alone (the
// crypto sub-mode, on the server's CPU), the floor (b.floor, still up) and a
// run of -cold-duration on caches filled first; then the row, the cache hits
// the run had (none means every Check was cold) and issue 14's target line
// against that round's floor and crypto. The verdict is the median of the
// rounds' ratios: the VM's speed drifts by 10–20 % from one minute to the
// next, more than the margins measured here.
func (b *benchRun) cold(ctx context.Context, tt *child, name, inAlg, kind string, pool *coldPool) error {
	for _, tr := range b.o.transports {
		var ratios []float64
		for round := 1; round <= b.o.coldRounds; round++ {
			r, judged, err := b.coldRound(ctx, tt, name, inAlg, kind, tr, pool)
			if err != nil {
				return err
			}
			if judged {
				ratios = append(ratios, r)
			}
		}
		if len(ratios) > 1 {
			fmt.Printf("  %s over %s: %s\n", name, tr, coldMedian(ratios))
		}
	}
	return nil
}

// coldRound is one round of cold over transport tr; it returns the round's
// ratio, the cryptography beyond the floor, and whether the run was long
// enough and not empty, so that the ratio judges.
//
// With -slice, the floor, the cold run (once the caches are full) and the
// cryptography alone (the crypto sub-mode, stopped and continued) take
// turns, in the order floor, tokentailor, crypto, crypto, tokentailor,
// floor, …: the three are measured over the same seconds. Without, the
// cryptography is timed right before and right after the cold run (their
// mean counts) and the floor right before it.
func (b *benchRun) coldRound(ctx context.Context, tt *child, name, inAlg, kind, tr string, pool *coldPool) (ratio float64, judged bool, err error) {
	what := fmt.Sprintf("SHA-256 + %s verify + %s sign, same keys, on the server's CPU", inAlg, mintAlgOf(kind))
	o := b.o.load
	o.Target, o.PID = tt.targets[tr], tt.cmd.Process.Pid
	o.Duration = b.o.coldDuration
	// Every shard of the validation cache full and shedding. The minted-token
	// cache stays empty: it admits only tokens seen before, and here none is.
	o.WarmupCold = 2 * int64(b.o.cacheMax)
	var hits0, miss0 float64
	var floor, res *result
	var crypto time.Duration
	if b.o.slice > 0 {
		files, rt, serr := b.cryptoSetup(ctx, tt, inAlg, kind, pool)
		if serr != nil {
			return 0, false, fmt.Errorf("%s: %w", name, serr)
		}
		cc, serr := startCrypto(ctx, b.pinSrv, rt, files)
		if serr != nil {
			return 0, false, fmt.Errorf("%s: %w", name, serr)
		}
		prof := b.profileFor(ctx, tt, name, tr, 3*o.Duration)
		fo := b.o.load
		fo.Target, fo.PID = b.floor.targets[tr], b.floor.cmd.Process.Pid
		var r []*result
		r, err = interleaved(ctx, []side{{o: fo, src: b.floorSource}, {o: o, src: &source{cycle: pool.raw}}, {turn: cc.turn}}, o.Duration, b.o.slice,
			func() { hits0, miss0, _ = jwtLookups(ctx, tt.admin); prof.start() })
		if perr := prof.wait(); err == nil && perr != nil {
			err = perr
		}
		var cerr error
		crypto, cerr = cc.finish()
		if err == nil {
			err = cerr
		}
		if err == nil {
			floor, res = r[0], r[1]
			fmt.Printf("  %s over %s: the cryptography alone (%s), in turns with the run: %s CPU per Check\n", name, tr, what, fmtDur(crypto))
			fmt.Printf("  %s over %s: the floor, in turns with the run: %s CPU per Check\n", name, tr, fmtDur(floor.CPUPerReq()))
		}
	} else {
		before, err := b.coldCrypto(ctx, tt, inAlg, kind, pool)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %w", name, err)
		}
		if floor, err = b.measure(ctx, b.floor, tr, b.floorSource, nil); err != nil {
			return 0, false, fmt.Errorf("%s: floor over %s: %w", name, tr, err)
		}
		prof := b.profiler(ctx, tt, name, tr)
		o.OnMeasure = func() { hits0, miss0, _ = jwtLookups(ctx, tt.admin); prof.start() }
		res, err = runLoad(ctx, o, &source{cycle: pool.raw})
		if perr := prof.wait(); err == nil && perr != nil {
			err = perr
		}
		if err != nil {
			return 0, false, fmt.Errorf("%s over %s: %w", name, tr, err)
		}
		after, err := b.coldCrypto(ctx, tt, inAlg, kind, pool)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %w", name, err)
		}
		crypto = (before + after) / 2
		fmt.Printf("  %s over %s: the cryptography alone (%s): %s CPU per Check (%s before the run, %s after)\n",
			name, tr, what, fmtDur(crypto), fmtDur(before), fmtDur(after))
		fmt.Printf("  %s over %s: the floor, right before: %s CPU per Check\n", name, tr, fmtDur(floor.CPUPerReq()))
	}
	if err != nil {
		return 0, false, fmt.Errorf("%s over %s: %w", name, tr, err)
	}
	b.out.row(row{name: name, transport: tr, res: res, floor: floor})
	hits1, miss1, err := jwtLookups(ctx, tt.admin)
	if err != nil {
		return 0, false, fmt.Errorf("%s over %s: %w", name, tr, err)
	}
	fmt.Printf("  %s over %s: %s of sustained load on full caches, %.0f validation-cache hits of %.0f lookups\n",
		name, tr, res.Elapsed.Round(100*time.Millisecond), hits1-hits0, hits1-hits0+miss1-miss0)
	if res.Requests == 0 {
		return 0, false, nil
	}
	line := coldVerdict(res.CPUPerReq(), floor.CPUPerReq(), crypto)
	if res.Elapsed < minColdDuration {
		fmt.Printf("  %s over %s: %s — run shorter than %s, not a verdict\n", name, tr, line, minColdDuration)
		return 0, false, nil
	}
	fmt.Printf("  %s over %s: %s\n", name, tr, line)
	return float64(res.CPUPerReq()-floor.CPUPerReq()) / float64(crypto), true, nil
}

// mintAlgOf names the alg of a mint key kind.
func mintAlgOf(kind string) string {
	if kind == "es256" {
		return "ES256"
	}
	return "EdDSA"
}

// coldCrypto runs the crypto sub-mode for a cold scenario on tt: a token of
// the pool, its issuer's public key, a token tt minted for it (one Check)
// and tt's mint key, under the servers' taskset prefix and runtime settings.
func (b *benchRun) coldCrypto(ctx context.Context, tt *child, inAlg, kind string, pool *coldPool) (time.Duration, error) {
	files, rt, err := b.cryptoSetup(ctx, tt, inAlg, kind, pool)
	if err != nil {
		return 0, err
	}
	return runCrypto(ctx, b.pinSrv, rt, files, cryptoDuration)
}

// cryptoSetup writes the crypto sub-mode's files for a cold scenario on tt
// and returns them with the runtime flags it runs with.
func (b *benchRun) cryptoSetup(ctx context.Context, tt *child, inAlg, kind string, pool *coldPool) (files, runtimeFlags []string, err error) {
	minted, err := mintedToken(ctx, tt.targets[b.o.transports[0]], pool.sample)
	if err != nil {
		return nil, nil, err
	}
	pub, err := b.iss.publicPEM(inAlg)
	if err != nil {
		return nil, nil, err
	}
	files = []string{
		filepath.Join(b.dir, "crypto-"+kind+"-in.jwt"),
		filepath.Join(b.dir, "crypto-"+kind+"-in.pub.pem"),
		filepath.Join(b.dir, "crypto-"+kind+"-minted.jwt"),
		filepath.Join(b.dir, "tokentailor-"+kind+".pem"), // written by startTokentailor
	}
	for i, content := range [][]byte{[]byte(pool.sample), pub, []byte(minted)} {
		if err := os.WriteFile(files[i], content, 0o600); err != nil {
			return nil, nil, err
		}
	}
	rt, err := b.runtimeFlags()
	if err != nil {
		return nil, nil, err
	}
	return files, rt, nil
}

// mintedToken sends one Check with token and returns the token tokentailor
// minted (the authorization header it sets, without "Bearer ").
func mintedToken(ctx context.Context, target, token string) (string, error) {
	cc, err := dial(target)
	if err != nil {
		return "", err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp := new(authv3.CheckResponse)
	if err := cc.Invoke(cctx, checkMethod, checkRequest(token, 0), resp); err != nil {
		return "", fmt.Errorf("a Check for the minted token: %w", err)
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), "authorization") {
			if tok, ok := strings.CutPrefix(h.GetHeader().GetValue(), "Bearer "); ok {
				return tok, nil
			}
		}
	}
	return "", fmt.Errorf("a Check for the minted token: no minted token in the answer (status code %d)", resp.GetStatus().GetCode())
}

// jwtLookups reads the validation cache's hit and miss counters from
// tokentailor's admin /metrics.
func jwtLookups(ctx context.Context, admin string) (hits, misses float64, err error) {
	body, err := getOK(ctx, http.DefaultClient, "http://"+admin+"/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer body.Close()
	return parseJWTLookups(body)
}

// parseJWTLookups picks tokentailor_cache_lookups_total{cache="jwt",…} out
// of a Prometheus text exposition.
func parseJWTLookups(r io.Reader) (hits, misses float64, err error) {
	const prefix = `tokentailor_cache_lookups_total{cache="jwt",result="`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		result, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metric jwt %s: %w", result, err)
		}
		switch result {
		case "hit":
			hits = v
		case "miss":
			misses = v
		}
	}
	return hits, misses, sc.Err()
}
