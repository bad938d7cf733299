package main

import (
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets, in the manner of an HDR
// histogram with 7 significant bits: every value is kept with a relative
// error below 1/64 (1.6 %), from 1 ns to about 36 minutes, in a fixed 19 KiB
// array. Recording is one index computation and an increment; a Histogram is
// not safe for concurrent use: each worker keeps its own and they are merged.
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
	max    uint64
}

const (
	subBits     = 7
	subCount    = 1 << subBits // values below this have a bucket each
	subHalf     = subCount / 2
	maxShift    = 35 // largest value kept: 2^(maxShift+subBits) ns
	histBuckets = subCount + maxShift*subHalf
)

// bucketOf returns the bucket index of v.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	if shift > maxShift {
		return histBuckets - 1
	}
	top := v >> uint(shift) // in [subHalf, subCount)
	return subCount + (shift-1)*subHalf + int(top-subHalf)
}

// bucketRange returns the lowest and highest value that fall into bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := (i-subCount)/subHalf + 1
	top := uint64((i-subCount)%subHalf + subHalf)
	lo = top << uint(shift)
	hi = lo + (1 << uint(shift)) - 1
	return lo, hi
}

// Record adds one latency; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.total++
	h.max = max(h.max, v)
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value below which a fraction q (0..1) of the recorded
// values lie: the middle of the bucket holding the q-th value, never more
// than the largest recorded value. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(min(lo+(hi-lo)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
