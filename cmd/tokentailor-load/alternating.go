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
//
// With -baseline, a second tokentailor (another build, same config) takes
// the floor's place, sent the same warm requests: the way to measure a
// change to the warm path within a few percent.
func (b *benchRun) alternating(ctx context.Context, pools *tokenPools) error {
	tt, err := b.startTokentailor(ctx, "eddsa")
	if err != nil {
		return err
	}
	defer tt.stop()
	warm := &source{warm: pools.warmJWT}
	ref, refSrc, refName := b.floor, b.floorSource, "floor"
	if b.o.baseline != "" {
		if ref, err = b.startBinary(ctx, b.o.baseline, "baseline-eddsa", "eddsa"); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		defer ref.stop()
		refSrc, refName = warm, "baseline"
	}
	how := fmt.Sprintf("the %s's whole run, then tokentailor's", refName)
	if b.o.slice > 0 {
		n := turnsPerSide(b.o.load.Duration, b.o.slice)
		how = fmt.Sprintf("in turns of %s, %d each (%s, tokentailor, tokentailor, %s, …)", b.o.load.Duration/time.Duration(n), n, refName, refName)
	}
	fmt.Printf("\nalternating %s and warm-jwt, %d rounds of %s each, %s (ratios tokentailor / %s):\n", refName, b.o.rounds, b.o.load.Duration, how, refName)
	fmt.Printf("%-6s %-5s %10s %10s %8s %9s %9s %8s %10s %10s %8s\n", "via", "round", refName+" r/s", "warm r/s", "×r/s", refName+" p99", "warm p99", "×p99", refName+" CPU", "warm CPU", "×CPU/rq")
	for _, tr := range b.o.transports {
		var rps, p99, cpu []float64
		for r := range b.o.rounds {
			f, w, err := b.alternatingRound(ctx, [2]*child{ref, tt}, [2]*source{refSrc, warm}, tr, r)
			if err != nil {
				return err
			}
			if w.Errors+w.Denied > 0 {
				return fmt.Errorf("warm-jwt over %s: %d errors, %d denials (%s)", tr, w.Errors, w.Denied, w.FirstError)
			}
			if refSrc == warm && f.Errors+f.Denied > 0 {
				return fmt.Errorf("baseline over %s: %d errors, %d denials (%s)", tr, f.Errors, f.Denied, f.FirstError)
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

// alternatingRound measures the reference (the floor or the baseline) and
// tt, each sent its source, over transport tr for -duration: one run after
// the other, or with -slice in turns (interleaved).
func (b *benchRun) alternatingRound(ctx context.Context, servers [2]*child, srcs [2]*source, tr string, round int) (ref, tokentailor *result, err error) {
	if b.o.slice <= 0 {
		if ref, err = b.measure(ctx, servers[0], tr, srcs[0], nil); err != nil {
			return nil, nil, fmt.Errorf("%s over %s: %w", servers[0].name, tr, err)
		}
		if tokentailor, err = b.measure(ctx, servers[1], tr, srcs[1], nil); err != nil {
			return nil, nil, fmt.Errorf("warm-jwt over %s: %w", tr, err)
		}
		return ref, tokentailor, nil
	}
	sides, err := b.sides(servers[:], srcs[:], tr)
	if err != nil {
		return nil, nil, err
	}
	// With -profile, both servers are profiled over the same turns of the
	// first round: each profile holds only its own turns, and the drift
	// falls on both alike.
	var profs []*profile
	if round == 0 {
		for i, c := range servers {
			name := "alternating-" + c.name
			if i == 1 {
				name = "alternating-warm-jwt"
			}
			profs = append(profs, b.profileFor(ctx, c, name, tr, 2*b.o.load.Duration))
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
		return nil, nil, fmt.Errorf("alternating over %s: %w", tr, err)
	}
	return res[0], res[1], nil
}

// sides returns the sides of an interleaved measurement of servers over
// transport tr, server i sent srcs[i].
func (b *benchRun) sides(servers []*child, srcs []*source, tr string) ([]side, error) {
	sides := make([]side, len(servers))
	for i, c := range servers {
		target, ok := c.targets[tr]
		if !ok {
			return nil, fmt.Errorf("unknown transport %q (want tcp or unix)", tr)
		}
		o := b.o.load
		o.Target, o.PID = target, c.cmd.Process.Pid
		sides[i] = side{o: o, src: srcs[i]}
	}
	return sides, nil
}

// side is one server of an interleaved measurement and what it is sent,
// or, when turn is set, something else that takes turns (the cryptography
// alone, cryptoChild.turn), measured by its own means.
type side struct {
	o    loadOptions
	src  *source
	turn func(time.Duration) error
}

// checkSlice refuses a -slice that is negative or so short that turns would
// be mostly the switching between them (0 means whole runs).
func checkSlice(slice time.Duration) error {
	if slice < 0 || slice > 0 && slice < time.Millisecond {
		return fmt.Errorf("-slice %s: want 0 (whole runs) or at least 1ms", slice)
	}
	return nil
}

// turnsPerSide is how many turns of about slice each side gets in d: even,
// so that the order (turnSide) ends balanced, and at least two.
func turnsPerSide(d, slice time.Duration) int {
	n := int((d + slice - 1) / slice)
	return max(2, n+n%2)
}

// turnSide is the side, of k, that takes turn t: the sides in order, then in
// reverse, and again (a b b a … for two, a b c c b a … for three), so that
// over every two passes each side's positions sum alike.
func turnSide(t, k int) int {
	i := t % k
	if t/k%2 == 1 {
		return k - 1 - i
	}
	return i
}

// interleaved loads the sides in turns (turnSide), each for d in all
// (turnsPerSide turns), after a warm-up of each (warmUp), and returns each
// side's results summed over its turns; start, when not nil, is called once
// the warm-ups are over. Only one server is loaded at a time; CPU per Check
// is read from the servers' CPU-time clocks (readProc) around every turn.
// The machine's speed drifts within seconds on a shared VM, more than the
// differences measured; turns of a fraction of a second, in an order that
// cancels a linear drift, let it fall on every side alike.
func interleaved(ctx context.Context, sides []side, d, slice time.Duration, start func()) ([]*result, error) {
	out := make([]*result, len(sides))
	clients := make([][]*grpc.ClientConn, len(sides))
	for i := range sides {
		s := &sides[i]
		out[i] = &result{}
		if s.turn != nil {
			continue
		}
		if s.o.Conns < 1 || s.o.Workers < 1 {
			return nil, fmt.Errorf("conns and workers must be positive")
		}
		if s.o.Timeout == 0 {
			s.o.Timeout = 5 * time.Second
		}
		if err := s.src.prepare(); err != nil {
			return nil, err
		}
		cs, closeAll, err := connect(s.o)
		if err != nil {
			return nil, err
		}
		defer closeAll()
		clients[i] = cs
		if err := warmUp(ctx, s.o, cs, s.src); err != nil {
			return nil, err
		}
	}
	if start != nil {
		start()
	}
	n := turnsPerSide(d, slice)
	for t := range len(sides) * n {
		i := turnSide(t, len(sides))
		if sides[i].turn != nil {
			if err := sides[i].turn(d / time.Duration(n)); err != nil {
				return nil, err
			}
			continue
		}
		r, err := phase(ctx, sides[i].o, clients[i], sides[i].src, d/time.Duration(n), true)
		if err != nil {
			return nil, err
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
