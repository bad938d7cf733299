package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is the kernel's USER_HZ: /proc/PID/stat counts CPU time in
// these. It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// errBadStat is wrapped by every parse error of /proc/PID/stat.
var errBadStat = errors.New("malformed /proc/PID/stat")

// ProcSample is what one read of /proc/PID/stat tells about a process.
type ProcSample struct {
	// CPU is user + system time consumed so far.
	CPU time.Duration
	// RSS is the resident set size in bytes.
	RSS int64
}

// parseStat parses the content of /proc/PID/stat. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte, pageSize int) (ProcSample, error) {
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return ProcSample{}, fmt.Errorf("%w: no command name", errBadStat)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, rss 24.
	const utime, stime, rss = 14 - 3, 15 - 3, 24 - 3
	if len(f) <= rss {
		return ProcSample{}, fmt.Errorf("%w: %d fields after the command name", errBadStat, len(f))
	}
	var v [3]int64
	for i, idx := range []int{utime, stime, rss} {
		n, err := strconv.ParseInt(f[idx], 10, 64)
		// 2^36 ticks is 21 years of CPU at 100 Hz (and two of them in
		// nanoseconds fit an int64); 2^36 pages is 256 TiB: beyond is garbage.
		if err != nil || n < 0 || n > 1<<36 {
			return ProcSample{}, fmt.Errorf("%w: field %d is not a count", errBadStat, idx+3)
		}
		v[i] = n
	}
	ticks := v[0] + v[1]
	return ProcSample{
		CPU: time.Duration(ticks) * (time.Second / clockTicks),
		RSS: v[2] * int64(pageSize),
	}, nil
}

// readProc samples process pid: its RSS from /proc/PID/stat, and its CPU
// time from its CPU-time clock (processCPU) when it can be read, else from
// /proc/PID/stat's 10 ms ticks.
func readProc(pid int) (ProcSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	s, err := parseStat(b, os.Getpagesize())
	if err != nil {
		return s, err
	}
	if cpu, err := processCPU(pid); err == nil {
		s.CPU = cpu
	}
	return s, nil
}

// processCPU returns the CPU time process pid has used, every thread
// included, exited ones too, in nanoseconds: clock_gettime(2) on the
// process's CPU-time clock (the clock clock_getcpuclockid(3) names, which
// Linux lets any process read). /proc/PID/stat counts in 10 ms ticks, too
// coarse for the 100 ms turns of an interleaved run.
func processCPU(pid int) (time.Duration, error) {
	const cpuclockSched = 2      // CPUCLOCK_SCHED: the scheduler's runtime
	if pid <= 0 || pid > 1<<22 { // PID_MAX_LIMIT: beyond, the id would not fit a clockid_t
		return 0, fmt.Errorf("CPU-time clock of process %d: no such process id", pid)
	}
	clock := int32(^pid<<3 | cpuclockSched)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, fmt.Errorf("CPU-time clock of process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// selfCPU returns the CPU time this process consumed so far (all threads).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
