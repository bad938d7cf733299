package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// memSample is one reading taken during the distinct-token run.
type memSample struct {
	at   time.Duration
	used int64
	rss  int64
}

// distinct sends o.distinct never-seen tokens (ES256, signed on the fly by
// the workers) through a fresh tokentailor and watches its resident memory
// and throughput while its caches fill and then stay full.
func (b *benchRun) distinct(ctx context.Context) error {
	tr := b.o.transports[0]
	tt, err := b.startTokentailor(ctx, "eddsa")
	if err != nil {
		return err
	}
	defer tt.stop()
	pid := tt.cmd.Process.Pid
	base, err := readProc(pid)
	if err != nil {
		return err
	}
	heap0, _ := b.memMetrics(ctx, tt.admin)
	gen := func(from int64) func(int64) (*authv3.CheckRequest, error) {
		return func(seq int64) (*authv3.CheckRequest, error) {
			tok, err := b.iss.sign("ES256", "distinct-"+strconv.FormatInt(from+seq, 10))
			if err != nil {
				return nil, err
			}
			return checkRequest(tok, int(from+seq)), nil
		}
	}
	// Weigh the bound: fill the caches to 80 % of cache.max_entries (no
	// shard is full yet, so nothing was shed) and take the live heap gained
	// per token. The caches' bound in bytes is that weight × max_entries.
	// The probe tokens are sent twice, in two passes: the minted-token cache
	// admits only a token seen before (the second pass), so tokens sent once
	// would leave it empty and weigh less than what the caches can hold. The
	// bound is what both caches can hold, more than the run itself fills
	// with tokens seen once (the minted-token cache then keeps only the
	// probe's).
	probeN := min(int64(b.o.cacheMax)*8/10, b.o.distinct)
	o := b.o.load
	o.Target, o.PID, o.Warmup, o.Duration = tt.targets[tr], pid, 0, 24*time.Hour
	probe, sign := make([]*authv3.CheckRequest, probeN), gen(0)
	for pass := range 2 {
		again := func(seq int64) (*authv3.CheckRequest, error) { return probe[seq], nil }
		if pass == 0 { // sign and keep: an ES256 token signed again is another token
			again = func(seq int64) (r *authv3.CheckRequest, err error) {
				probe[seq], err = sign(seq)
				return probe[seq], err
			}
		}
		res, err := runLoad(ctx, o, &source{limit: probeN, gen: again})
		if err != nil {
			return fmt.Errorf("distinct (probe) over %s: %w", tr, err)
		}
		if res.OK != uint64(probeN) {
			return fmt.Errorf("distinct (probe) over %s: pass %d: %d of %d tokens allowed", tr, pass+1, res.OK, probeN)
		}
	}
	heapProbe, _ := b.memMetrics(ctx, tt.admin)
	perToken := float64(heapProbe-heap0) / float64(max(probeN, 1))
	bound := int64(perToken * float64(b.o.cacheMax))
	probeRSS, _ := readProc(pid)
	src := &source{limit: b.o.distinct - probeN, gen: gen(probeN)}
	var (
		mu      sync.Mutex
		samples []memSample
		done    = make(chan struct{})
		wg      sync.WaitGroup
	)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if s, err := readProc(pid); err == nil {
					mu.Lock()
					samples = append(samples, memSample{at: time.Since(start), used: src.Used(), rss: s.RSS})
					mu.Unlock()
				}
			}
		}
	}()
	res, err := runLoad(ctx, o, src)
	close(done)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("distinct over %s: %w", tr, err)
	}
	b.out.row(row{name: fmt.Sprintf("distinct-%dk", b.o.distinct/1000), transport: tr, res: res, floor: b.floors[tr]})

	samples = append(samples, memSample{at: res.Elapsed, used: src.Used(), rss: res.RSSAfter})
	heap, rssMetric := b.memMetrics(ctx, tt.admin)
	peak := max(res.RSSAfter, probeRSS.RSS)
	for _, s := range samples {
		peak = max(peak, s.rss)
	}
	fill, full := phaseRates(samples, int64(b.o.cacheMax), b.o.distinct)
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Printf("\nmemory, %d distinct tokens through one tokentailor (cache.max_entries %d, over %s):\n", res.Requests+uint64(probeN), b.o.cacheMax, tr)
	fmt.Printf("  RSS at start %s, peak %s, at end %s (growth %s); live heap at end %s (process_resident_memory_bytes %s)\n",
		mib(base.RSS), mib(peak), mib(res.RSSAfter), mib(peak-base.RSS), mib(heap), mib(rssMetric))
	// Issue 6 asks that RSS stay under the caches' bound plus 64 MiB,
	// counted from zero.
	verdict := "within"
	if peak > bound+64<<20 {
		verdict = "OVER"
	}
	fmt.Printf("  cache bound: %.0f B of live heap per token (weighed at %d tokens) × %d entries = %s; RSS peak %s vs bound + 64 MiB = %s: %s\n",
		perToken, probeN, b.o.cacheMax, mib(bound), mib(peak), mib(bound+64<<20), verdict)
	fmt.Printf("  throughput while the caches fill: %.0f req/s; once full (last tokens): %.0f req/s\n", fill, full)
	return nil
}

// phaseRates returns the request rate before fillAt tokens were sent and over
// the last fifth of the run.
func phaseRates(s []memSample, fillAt, total int64) (fill, full float64) {
	rate := func(a, b memSample) float64 {
		if b.at <= a.at {
			return 0
		}
		return float64(b.used-a.used) / (b.at - a.at).Seconds()
	}
	var zero memSample
	var fillEnd, lastStart *memSample
	for i := range s {
		if s[i].used <= fillAt {
			fillEnd = &s[i]
		}
		if lastStart == nil && s[i].used >= total*4/5 {
			lastStart = &s[i]
		}
	}
	if fillEnd != nil {
		fill = rate(zero, *fillEnd)
	}
	if lastStart != nil && len(s) > 0 {
		full = rate(*lastStart, s[len(s)-1])
	}
	return fill, full
}

// memMetrics reads the live heap and RSS from tokentailor's /metrics, after
// a full collection (asked for through pprof's heap profile with gc=1, which
// the bench's configs turn on), so that garbage not yet collected, plentiful
// with a high GC target, is not counted as what the caches hold.
func (b *benchRun) memMetrics(ctx context.Context, admin string) (heap, rss int64) {
	client := &http.Client{Timeout: 30 * time.Second}
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/debug/pprof/heap?gc=1", nil); err == nil {
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, 0
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_alloc_bytes":
			heap = int64(f)
		case "process_resident_memory_bytes":
			rss = int64(f)
		}
	}
	return heap, rss
}
