package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
)

// alternating runs the floor and warm-jwt in turns, o.rounds times over each
// transport, with both servers up (only one is loaded at a time), so that a
// slow spell of a shared machine falls on both alike. It prints every round's
// ratios and their medians: the figures to hold against issue 14's warm
// targets (throughput ≥ 0.9 ×, CPU per Check ≤ 1.1 ×, p99 ≤ 1.2 × the floor's).
func (b *benchRun) alternating(ctx context.Context, pools *tokenPools) error {
	tt, err := b.startTokentailor(ctx, "eddsa")
	if err != nil {
		return err
	}
	defer tt.stop()
	how := "the floor's whole run, then tokentailor's"
	if b.o.slice > 0 {
		n := turnsPerSide(b.o.load.Duration, b.o.slice)
		how = fmt.Sprintf("in turns of %s, %d each (floor, tokentailor, tokentailor, floor, …)", b.o.load.Duration/time.Duration(n), n)
	}
	fmt.Printf("\nalternating floor and warm-jwt, %d rounds of %s each, %s (ratios tokentailor / floor):\n", b.o.rounds, b.o.load.Duration, how)
	fmt.Printf("%-6s %-5s %10s %10s %8s %9s %9s %8s %10s %10s %8s\n", "via", "round", "floor r/s", "warm r/s", "×r/s", "floor p99", "warm p99", "×p99", "floor CPU", "warm CPU", "×CPU/rq")
	for _, tr := range b.o.transports {
		var rps, p99, cpu []float64
		warm := &source{warm: pools.warmJWT}
		for r := range b.o.rounds {
			f, w, err := b.alternatingRound(ctx, tt, tr, r, warm)
			if err != nil {
				return err
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

// alternatingRound measures the floor and tt (with warm) over transport tr
// for -duration each: one run after the other, or with -slice in turns
// (interleaved).
func (b *benchRun) alternatingRound(ctx context.Context, tt *child, tr string, round int, warm *source) (floor, tokentailor *result, err error) {
	if b.o.slice <= 0 {
		if floor, err = b.measure(ctx, b.floor, tr, b.floorSource, nil); err != nil {
			return nil, nil, fmt.Errorf("floor over %s: %w", tr, err)
		}
		if tokentailor, err = b.measure(ctx, tt, tr, warm, nil); err != nil {
			return nil, nil, fmt.Errorf("warm-jwt over %s: %w", tr, err)
		}
		return floor, tokentailor, nil
	}
	var sides [2]side
	for i, c := range []struct {
		srv *child
		src *source
	}{{b.floor, b.floorSource}, {tt, warm}} {
		target, ok := c.srv.targets[tr]
		if !ok {
			return nil, nil, fmt.Errorf("unknown transport %q (want tcp or unix)", tr)
		}
		o := b.o.load
		o.Target, o.PID = target, c.srv.cmd.Process.Pid
		sides[i] = side{o: o, src: c.src}
	}
	// With -profile, both servers are profiled over the same turns of the
	// first round: each profile holds only its own turns, and the drift
	// falls on both alike.
	var profs []*profile
	if round == 0 {
		for _, p := range []struct {
			srv  *child
			name string
		}{{b.floor, "alternating-floor"}, {tt, "alternating-warm-jwt"}} {
			profs = append(profs, b.profileFor(ctx, p.srv, p.name, tr, 2*b.o.load.Duration))
		}
	}
	res, err := interleaved(ctx, sides, b.o.load.Duration, b.o.slice, func() {
		for _, p := range profs {
			p.start()
		}
	})
	for _, p := range profs {
		if perr := p.wait(); err == nil && perr != nil {
			err = perr
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("floor and warm-jwt over %s: %w", tr, err)
	}
	return res[0], res[1], nil
}

// side is one server of an interleaved measurement and what it is sent.
type side struct {
	o   loadOptions
	src *source
}

// turnsPerSide is how many turns of about slice each side gets in d: even,
// so that the order a b b a … ends balanced, and at least two.
func turnsPerSide(d, slice time.Duration) int {
	n := int((d + slice - 1) / slice)
	return max(2, n+n%2)
}

// turnSide is the side that takes turn t: 0 1 1 0 0 1 1 0 …
func turnSide(t int) int { return (t + 1) / 2 % 2 }

// interleaved loads the two sides in turns, a b b a a b b a …, each for
// d in all (turnsPerSide turns), after a warm-up of each (warmUp), and
// returns each side's results summed over its turns; start, when not nil,
// is called once the warm-ups are over. Only one server is
// loaded at a time; CPU per Check is read from /proc around every turn. The
// machine's speed drifts within seconds on a shared VM, more than the
// differences measured; turns of a fraction of a second, in an order that
// cancels a linear drift, let it fall on both sides alike.
func interleaved(ctx context.Context, sides [2]side, d, slice time.Duration, start func()) ([2]*result, error) {
	var out [2]*result
	var clients [2][]*grpc.ClientConn
	for i := range sides {
		s := &sides[i]
		if s.o.Conns < 1 || s.o.Workers < 1 {
			return out, fmt.Errorf("conns and workers must be positive")
		}
		if s.o.Timeout == 0 {
			s.o.Timeout = 5 * time.Second
		}
		if err := s.src.prepare(); err != nil {
			return out, err
		}
		cs, closeAll, err := connect(s.o)
		if err != nil {
			return out, err
		}
		defer closeAll()
		clients[i] = cs
		if err := warmUp(ctx, s.o, cs, s.src); err != nil {
			return out, err
		}
		out[i] = &result{}
	}
	if start != nil {
		start()
	}
	n := turnsPerSide(d, slice)
	for t := range 2 * n {
		i := turnSide(t)
		r, err := phase(ctx, sides[i].o, clients[i], sides[i].src, d/time.Duration(n), true)
		if err != nil {
			return out, err
		}
		out[i].add(r)
	}
	return out, nil
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
