package server

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Flags of BenchmarkMemoryDistinctTokens, e.g.
//
//	go test -run XXX -bench MemoryDistinct -benchtime 1x ./extauthz/server \
//	    -distinct.tokens 200000 -distinct.cache 10000
var (
	distinctTokens = flag.Int("distinct.tokens", 0, "distinct tokens fed by BenchmarkMemoryDistinctTokens (0: b.N)")
	distinctCache  = flag.Int("distinct.cache", 1000, "cache.max_entries of BenchmarkMemoryDistinctTokens")
)

// BenchmarkMemoryDistinctTokens feeds many distinct valid JWTs through one
// pipeline whose caches are bounded by -distinct.cache entries each, and
// reports the live heap after GC: at the start, once the caches are full
// (after 2 × the bound), and at the end. With bounded caches the growth after
// the caches are full stays near zero however many tokens pass. Tokens are
// signed (EdDSA) in batches with the timer stopped; ns/check is one cold Check.
func BenchmarkMemoryDistinctTokens(b *testing.B) {
	n := *distinctTokens
	if n == 0 {
		n = b.N
	}
	bound := *distinctCache
	e := newBenchEnv(b, "EdDSA", bound)
	fullAt := 2 * bound
	heap0, rss0 := liveHeap(), rss()
	var heapFull uint64
	const batch = 1024
	reqs := make([]*authv3.CheckRequest, 0, batch)
	b.ResetTimer()
	for done := 0; done < n; {
		b.StopTimer()
		reqs = reqs[:0]
		for i := 0; i < batch && done+i < n; i++ {
			reqs = append(reqs, benchCheckRequest(e.jwt(b, "EdDSA", "mem-"+strconv.Itoa(done+i))))
		}
		b.StartTimer()
		for _, r := range reqs {
			e.check(b, r)
			done++
			if done == fullAt {
				b.StopTimer()
				heapFull = liveHeap()
				b.StartTimer()
			}
		}
	}
	b.StopTimer()
	heapEnd, rssEnd := liveHeap(), rss()
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/check")
	b.ReportMetric(float64(n), "tokens")
	b.ReportMetric(float64(bound), "bound-entries")
	b.ReportMetric(mib(heapEnd)-mib(heap0), "heap-growth-MiB")
	b.ReportMetric(mib(rssEnd)-mib(rss0), "rss-growth-MiB")
	if heapFull > 0 {
		b.ReportMetric(mib(heapEnd)-mib(heapFull), "heap-growth-after-full-MiB")
		b.ReportMetric((float64(heapFull)-float64(heap0))/float64(bound), "heap-B/bound-entry")
	}
}

// liveHeap returns the bytes of live heap objects after a full GC.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss returns this process's resident set size from /proc/self/statm, 0 when
// unavailable (non-Linux).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
