package main

import (
	"bufio"
	"context"
	"fmt"
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
	src := &source{limit: b.o.distinct, gen: func(seq int64) (*authv3.CheckRequest, error) {
		tok, err := b.iss.sign("ES256", "distinct-"+strconv.FormatInt(seq, 10))
		if err != nil {
			return nil, err
		}
		return checkRequest(tok, int(seq)), nil
	}}
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
	o := b.o.load
	o.Target, o.PID, o.Warmup, o.Duration = tt.targets[tr], pid, 0, 24*time.Hour
	res, err := runLoad(ctx, o, src)
	close(done)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("distinct over %s: %w", tr, err)
	}
	b.out.row(row{name: fmt.Sprintf("distinct-%dk", b.o.distinct/1000), transport: tr, res: res, floor: b.floors[tr]})

	samples = append(samples, memSample{at: res.Elapsed, used: src.Used(), rss: res.RSSAfter})
	heap, rssMetric := b.memMetrics(ctx, tt.admin)
	peak := res.RSSAfter
	for _, s := range samples {
		peak = max(peak, s.rss)
	}
	fill, full := phaseRates(samples, int64(b.o.cacheMax), b.o.distinct)
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Printf("\nmemory, %d distinct tokens through one tokentailor (cache.max_entries %d, over %s):\n", res.Requests, b.o.cacheMax, tr)
	fmt.Printf("  RSS at start %s, peak %s, at end %s (growth %s); heap in use at end %s (process_resident_memory_bytes %s)\n",
		mib(base.RSS), mib(peak), mib(res.RSSAfter), mib(peak-base.RSS), mib(heap), mib(rssMetric))
	// What the full caches hold is what the heap gained; issue 6 asks that
	// RSS stay under that bound plus 64 MiB, counted from zero.
	bound := heap - heap0
	verdict := "within"
	if peak > bound+64<<20 {
		verdict = "OVER"
	}
	fmt.Printf("  caches when full: %s of heap (in use at end minus at start); RSS peak %s vs bound + 64 MiB = %s: %s\n",
		mib(bound), mib(peak), mib(bound+64<<20), verdict)
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

// memMetrics reads heap in use and RSS from tokentailor's /metrics.
func (b *benchRun) memMetrics(ctx context.Context, admin string) (heap, rss int64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, 0
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
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
		case "go_memstats_heap_inuse_bytes":
			heap = int64(f)
		case "process_resident_memory_bytes":
			rss = int64(f)
		}
	}
	return heap, rss
}
