package main

import (
	"math"
	"testing"
	"time"
)

func TestBucketRangeHoldsValue(t *testing.T) {
	tests := []struct {
		name string
		v    uint64
	}{
		{name: "zero", v: 0},
		{name: "largest exact", v: subCount - 1},
		{name: "first log bucket", v: subCount},
		{name: "microsecond", v: 1000},
		{name: "odd", v: 123_457},
		{name: "second", v: uint64(time.Second)},
		{name: "power of two", v: 1 << 30},
		{name: "just below power of two", v: 1<<30 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := bucketOf(tt.v)
			lo, hi := bucketRange(i)
			if tt.v < lo || tt.v > hi {
				t.Fatalf("bucketOf(%d) = %d with range [%d, %d]", tt.v, i, lo, hi)
			}
			if rel := float64(hi-lo) / float64(max(lo, 1)); rel > 1.0/64 {
				t.Errorf("bucket [%d, %d] is %.3f wide, want ≤ 1/64", lo, hi, rel)
			}
		})
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	_, prevHi := bucketRange(0)
	for i := 1; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d: bucketOf(lo)=%d bucketOf(hi)=%d", i, bucketOf(lo), bucketOf(hi))
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxUint64); got != histBuckets-1 {
		t.Errorf("huge value goes to bucket %d, want the last (%d)", got, histBuckets-1)
	}
}

func TestQuantile(t *testing.T) {
	uniform := func(n int) []time.Duration {
		var ds []time.Duration
		for i := 1; i <= n; i++ {
			ds = append(ds, time.Duration(i)*time.Microsecond)
		}
		return ds
	}
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "empty", values: nil, q: .5, want: 0},
		{name: "single", values: []time.Duration{42 * time.Microsecond}, q: .99, want: 42 * time.Microsecond},
		{name: "median of 1..1000µs", values: uniform(1000), q: .5, want: 500 * time.Microsecond},
		{name: "p90 of 1..1000µs", values: uniform(1000), q: .9, want: 900 * time.Microsecond},
		{name: "p99 of 1..1000µs", values: uniform(1000), q: .99, want: 990 * time.Microsecond},
		{name: "max never exceeded", values: uniform(1000), q: 1, want: 1000 * time.Microsecond},
		{name: "negative counts as zero", values: []time.Duration{-5}, q: .5, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			got := h.Quantile(tt.q)
			if diff := math.Abs(float64(got - tt.want)); diff > float64(tt.want)/64+1 {
				t.Errorf("Quantile(%v) = %v, want %v ± 1/64", tt.q, got, tt.want)
			}
			if got > h.Max() {
				t.Errorf("Quantile(%v) = %v beyond Max %v", tt.q, got, h.Max())
			}
		})
	}
}

func TestMerge(t *testing.T) {
	var a, b Histogram
	for i := range 100 {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(i+100) * time.Millisecond)
	}
	a.Merge(&b)
	if a.Count() != 200 {
		t.Fatalf("Count = %d, want 200", a.Count())
	}
	if a.Max() != 199*time.Millisecond {
		t.Errorf("Max = %v, want 199ms", a.Max())
	}
	if got := a.Quantile(.5); got < 98*time.Millisecond || got > 101*time.Millisecond {
		t.Errorf("median = %v, want about 99.5ms", got)
	}
}
