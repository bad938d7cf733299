package logsample_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/logsample"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// step is one call to Admit after advancing the clock by advance.
type step struct {
	advance        time.Duration
	key            string
	wantOK         bool
	wantSuppressed int
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		name   string
		per    int
		window time.Duration
		steps  []step
	}{
		{
			name: "first N per window, then a summary with the next admitted line", per: 2, window: time.Second,
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a", wantOK: true},
				{key: "a"},
				{key: "a"},
				{advance: 999 * time.Millisecond, key: "a"},
				{advance: time.Millisecond, key: "a", wantOK: true, wantSuppressed: 3},
				{key: "a", wantOK: true},
				{key: "a"},
			},
		},
		{
			name: "keys are counted apart", per: 1, window: time.Second,
			steps: []step{
				{key: "a", wantOK: true},
				{key: "b", wantOK: true},
				{key: "a"},
				{key: "b"},
				{key: "b"},
				{advance: time.Second, key: "b", wantOK: true, wantSuppressed: 2},
				{key: "a", wantOK: true, wantSuppressed: 1}, // a's window began at 0 too
			},
		},
		{
			name: "suppressed lines are carried over windows without lines", per: 1, window: time.Second,
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a"},
				{advance: 10 * time.Second, key: "a", wantOK: true, wantSuppressed: 1},
				{advance: 10 * time.Second, key: "a", wantOK: true},
			},
		},
		{
			name: "zero per admits everything", per: 0, window: time.Second,
			steps: []step{{key: "a", wantOK: true}, {key: "a", wantOK: true}, {key: "a", wantOK: true}},
		},
		{
			name: "zero window admits everything", per: 1, window: 0,
			steps: []step{{key: "a", wantOK: true}, {key: "a", wantOK: true}},
		},
		{
			name: "a clock going back starts a new window", per: 1, window: time.Second,
			steps: []step{
				{key: "a", wantOK: true},
				{key: "a"},
				{advance: -time.Minute, key: "a", wantOK: true, wantSuppressed: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: time.Unix(1_800_000_000, 0)}
			s := logsample.New(tt.per, tt.window, clk.now)
			for i, st := range tt.steps {
				clk.t = clk.t.Add(st.advance)
				ok, sup := s.Admit(st.key)
				if ok != st.wantOK || sup != st.wantSuppressed {
					t.Fatalf("step %d (%s): Admit = %v, %d; want %v, %d", i, st.key, ok, sup, st.wantOK, st.wantSuppressed)
				}
			}
		})
	}
}

func TestNilSamplerAdmitsEverything(t *testing.T) {
	var s *logsample.Sampler
	if ok, sup := s.Admit("a"); !ok || sup != 0 {
		t.Fatalf("nil Sampler: Admit = %v, %d", ok, sup)
	}
}

func TestKeysBeyondTheBoundShareOneBucket(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s := logsample.New(1, time.Second, clk.now)
	for i := range logsample.MaxKeys {
		if ok, _ := s.Admit(fmt.Sprint(i)); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	if ok, _ := s.Admit("new-1"); !ok {
		t.Fatal("the first key beyond the bound was refused: the overflow bucket is empty")
	}
	if ok, _ := s.Admit("new-2"); ok {
		t.Fatal("a second key beyond the bound was admitted in the same window: keys beyond the bound must share one bucket")
	}
}

func TestConcurrentAdmitCountsEveryLine(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s := logsample.New(5, time.Hour, clk.now)
	const goroutines, each = 8, 1000
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if ok, _ := s.Admit("deny"); ok {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Fatalf("%d lines admitted in one window, want 5", admitted)
	}
	clk.t = clk.t.Add(time.Hour)
	if ok, sup := s.Admit("deny"); !ok || sup != goroutines*each-5 {
		t.Fatalf("next window: Admit = %v, %d; want true, %d", ok, sup, goroutines*each-5)
	}
}
