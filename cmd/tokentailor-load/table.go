package main

import (
	"fmt"
	"io"
	"time"
)

// row is one line of the results table; floor, when set, is the floor
// measured over the same transport in the same run.
type row struct {
	name, transport string
	res             *result
	floor           *result
}

// table prints results aligned, with ratios to the floor.
type table struct{ w io.Writer }

func newTable(w io.Writer) *table { return &table{w: w} }

const rowFormat = "%-26s %-5s %9s %6s %8s %8s %8s %6s %9s %6s %5s %5s %s\n"

func (t *table) header() {
	fmt.Fprintf(t.w, rowFormat, "scenario", "via", "req/s", "×floor", "p50", "p90", "p99", "×floor",
		"srvCPU/rq", "×floor", "srv%", "gen%", "notes")
}

func (t *table) row(r row) {
	res := r.res
	rps, p99, cpu := "", "", ""
	if f := r.floor; f != nil && f != res {
		rps = ratio(res.RPS(), f.RPS())
		p99 = ratio(float64(res.Hist.Quantile(.99)), float64(f.Hist.Quantile(.99)))
		cpu = ratio(float64(res.CPUPerReq()), float64(f.CPUPerReq()))
	}
	notes := ""
	if res.Errors+res.Denied > 0 {
		notes = fmt.Sprintf("%d errors, %d denied (%s)", res.Errors, res.Denied, res.FirstError)
	}
	srvCPU := "-"
	srvPct := "-"
	if res.ServerCPU > 0 {
		srvCPU = fmtDur(res.CPUPerReq())
		srvPct = pct(res.ServerCPU, res.Elapsed)
	}
	fmt.Fprintf(t.w, rowFormat, r.name, r.transport, fmt.Sprintf("%.0f", res.RPS()), rps,
		fmtDur(res.Hist.Quantile(.5)), fmtDur(res.Hist.Quantile(.9)), fmtDur(res.Hist.Quantile(.99)), p99,
		srvCPU, cpu, srvPct, pct(res.GenCPU, res.Elapsed), notes)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func pct(part, whole time.Duration) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", 100*part.Seconds()/whole.Seconds())
}

// fmtDur prints a duration in µs with three significant digits, or ms.
func fmtDur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	default:
		return fmt.Sprintf("%.1fms", us/1000)
	}
}
