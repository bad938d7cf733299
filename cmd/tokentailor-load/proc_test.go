package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		input   string
		wantCPU time.Duration
		wantRSS int64
		wantErr error
	}{
		{name: "name with spaces and parentheses", file: "stat-parens.txt", wantCPU: 3250 * time.Millisecond, wantRSS: 5120 * 4096},
		{name: "no parenthesis", input: "1 cat S 1 2 3", wantErr: errBadStat},
		{name: "truncated", input: "1 (cat) S 1 2 3 4 5 6 7 8 9 10 11", wantErr: errBadStat},
		{name: "negative utime", input: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -3 1 0 0 20 0 1 0 1 1 7 0", wantErr: errBadStat},
		{name: "garbage count", input: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 1 0 0 20 0 1 0 1 1 7 0", wantErr: errBadStat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.input)
			if tt.file != "" {
				var err error
				if in, err = os.ReadFile(filepath.Join("testdata", tt.file)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := parseStat(in, 4096)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.CPU != tt.wantCPU || got.RSS != tt.wantRSS {
				t.Errorf("got CPU %v RSS %d, want %v %d", got.CPU, got.RSS, tt.wantCPU, tt.wantRSS)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 {
		t.Errorf("RSS of this test process = %d, want > 0", s.RSS)
	}
}

// processCPU reads another process's CPU time, in nanoseconds, and it
// agrees with /proc/PID/stat's ticks.
func TestProcessCPUOfAChild(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh to run a child: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	var cpu time.Duration
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if cpu, err = processCPU(pid); err != nil {
			t.Fatal(err)
		}
		if cpu > 50*time.Millisecond || time.Now().After(deadline) {
			break
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := parseStat(b, 4096)
	if err != nil {
		t.Fatal(err)
	}
	after, err := processCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The ticks were read between the two clock readings; they lag by less
	// than a tick, plus rounding.
	if slack := 20 * time.Millisecond; ticks.CPU < cpu-slack || ticks.CPU > after+slack {
		t.Errorf("CPU-time clock %v then %v, /proc ticks %v in between", cpu, after, ticks.CPU)
	}
	if cpu%(10*time.Millisecond) == 0 {
		t.Errorf("CPU-time clock %v is a whole number of ticks: not nanoseconds?", cpu)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, gone := range []int{pid, 1 << 30, 0, -1} {
		if c, err := processCPU(gone); err == nil {
			t.Errorf("process %d (gone or impossible): %v and no error", gone, c)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, name := range []string{"stat-cat.txt", "stat-parens.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("1 ((((( S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b, 4096)
		if err != nil && !errors.Is(err, errBadStat) {
			t.Fatalf("error %v does not wrap errBadStat", err)
		}
		if err == nil && (s.CPU < 0 || s.RSS < 0) {
			t.Fatalf("negative sample %+v", s)
		}
	})
}
