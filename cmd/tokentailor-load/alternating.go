package main

import (
	"context"
	"fmt"
	"slices"
)

// alternating runs the floor and warm-jwt in turns, o.rounds times over each
// transport, with both servers up (only one is loaded at a time), so that a
// slow spell of a shared machine falls on both alike. It prints every round's
// ratios and their medians: the figures to hold against issue 14's warm
// targets (throughput ≥ 0.9 ×, CPU per Check ≤ 1.1 ×, p99 ≤ 1.2 × the floor's).
func (b *benchRun) alternating(ctx context.Context, pools *tokenPools) error {
	floor := b.floor
	tt, err := b.startTokentailor(ctx, "eddsa")
	if err != nil {
		return err
	}
	defer tt.stop()
	fmt.Printf("\nalternating floor and warm-jwt, %d rounds of %s each (ratios tokentailor / floor):\n", b.o.rounds, b.o.load.Duration)
	fmt.Printf("%-6s %-5s %10s %10s %8s %9s %9s %8s %10s %10s %8s\n", "via", "round", "floor r/s", "warm r/s", "×r/s", "floor p99", "warm p99", "×p99", "floor CPU", "warm CPU", "×CPU/rq")
	for _, tr := range b.o.transports {
		var rps, p99, cpu []float64
		for r := range b.o.rounds {
			f, err := b.measure(ctx, floor, tr, b.floorSource, nil)
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
			fmt.Printf("%-6s %-5d %10.0f %10.0f %8.2f %9s %9s %8.2f %10s %10s %8.2f\n", tr, r+1, f.RPS(), w.RPS(), rps[r],
				fmtDur(f.Hist.Quantile(.99)), fmtDur(w.Hist.Quantile(.99)), p99[r], fmtDur(f.CPUPerReq()), fmtDur(w.CPUPerReq()), cpu[r])
		}
		fmt.Printf("%-6s %-5s %10s %10s %8.2f %9s %9s %8.2f %10s %10s %8.2f\n", tr, "median", "", "", median(rps), "", "", median(p99), "", "", median(cpu))
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
