package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

func TestSource(t *testing.T) {
	warm := []*authv3.CheckRequest{checkRequest("w0", 0), checkRequest("w1", 1)}
	// cold returns a fresh pool: Next drops the requests it hands out.
	cold := func() []*authv3.CheckRequest {
		return []*authv3.CheckRequest{checkRequest("c0", 0), checkRequest("c1", 1)}
	}
	genErr := errors.New("sign failed")
	tests := []struct {
		name      string
		src       *source
		calls     int
		wantCold  int64
		wantErrAt int // index of the call that fails, -1 for none
		wantErr   error
	}{
		{name: "warm only never runs out", src: &source{warm: warm}, calls: 10, wantErrAt: -1},
		{name: "cold pool runs out", src: &source{cold: cold()}, calls: 3, wantCold: 3, wantErrAt: 2, wantErr: errExhausted},
		{name: "gen takes over after the pool", src: &source{cold: cold(), gen: func(seq int64) (*authv3.CheckRequest, error) {
			return checkRequest("g", int(seq)), nil
		}}, calls: 5, wantCold: 5, wantErrAt: -1},
		{name: "limit stops gen", src: &source{limit: 2, gen: func(seq int64) (*authv3.CheckRequest, error) {
			return checkRequest("g", int(seq)), nil
		}}, calls: 3, wantCold: 3, wantErrAt: 2, wantErr: errExhausted},
		{name: "gen error is passed on", src: &source{gen: func(int64) (*authv3.CheckRequest, error) { return nil, genErr }},
			calls: 1, wantCold: 1, wantErrAt: 0, wantErr: genErr},
		{name: "every third is cold", src: &source{warm: warm, cold: cold(), coldEvery: 3}, calls: 6, wantCold: 2, wantErrAt: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for n := range tt.calls {
				r, err := tt.src.Next(0, uint64(n))
				if n == tt.wantErrAt {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("call %d: err = %v, want %v", n, err, tt.wantErr)
					}
					return
				}
				if err != nil || r == nil {
					t.Fatalf("call %d: %v, %v", n, r, err)
				}
			}
			if got := tt.src.Used(); got != tt.wantCold {
				t.Errorf("Used = %d, want %d", got, tt.wantCold)
			}
		})
	}
}

func TestCheckRequestCarriesToken(t *testing.T) {
	tests := []struct {
		name, token, wantAuth string
	}{
		{name: "with token", token: "abc", wantAuth: "Bearer abc"},
		{name: "without token", token: "", wantAuth: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkRequest(tt.token, 7)
			h := r.GetAttributes().GetRequest().GetHttp()
			if got := h.GetHeaders()["authorization"]; got != tt.wantAuth {
				t.Errorf("authorization = %q, want %q", got, tt.wantAuth)
			}
			if h.GetMethod() != "GET" || h.GetHeaders()[":path"] != h.GetPath() {
				t.Errorf("inconsistent request: %v", h)
			}
			a := r.GetAttributes()
			if a.GetContextExtensions()["route"] != benchRoute {
				t.Errorf("route extension missing")
			}
			// What Envoy's filter always sends besides the headers.
			if a.GetSource().GetAddress().GetSocketAddress().GetAddress() == "" ||
				a.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 {
				t.Errorf("peers missing: source %v, destination %v", a.GetSource(), a.GetDestination())
			}
			if !a.GetRequest().GetTime().IsValid() || h.GetId() == "" || h.GetProtocol() == "" {
				t.Errorf("time, id or protocol missing: %v %q %q", a.GetRequest().GetTime(), h.GetId(), h.GetProtocol())
			}
			if a.GetMetadataContext() == nil || a.GetRouteMetadataContext() == nil {
				t.Errorf("metadata contexts missing")
			}
			if b, err := proto.Marshal(r); err != nil || !bytes.Contains(b, []byte{0x5a, 0x00}) || !bytes.Contains(b, []byte{0x6a, 0x00}) {
				t.Errorf("empty metadata contexts not on the wire (err %v)", err)
			}
		})
	}
}

// TestRunLoadAgainstFloor drives the in-process floor over both transports
// and checks the counting, never the timing.
func TestRunLoadAgainstFloor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan []string, 1)
	errc := make(chan error, 1)
	sock := "unix://" + filepath.Join(t.TempDir(), "floor.sock")
	go func() { errc <- serveFloor(ctx, []string{"127.0.0.1:0", sock}, func(a []string) { addrs <- a }) }()
	var got []string
	select {
	case got = <-addrs:
	case err := <-errc:
		t.Fatal(err)
	}
	tests := []struct {
		name, target string
		src          *source
		wantAtMost   uint64
	}{
		{name: "tcp warm", target: got[0][len("tcp://"):], src: &source{warm: []*authv3.CheckRequest{checkRequest("t", 0)}}},
		{name: "unix cold until used up", target: sock, src: &source{cold: []*authv3.CheckRequest{
			checkRequest("a", 0), checkRequest("b", 1), checkRequest("c", 2),
		}}, wantAtMost: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runLoad(ctx, loadOptions{Target: tt.target, Conns: 2, Workers: 4, Duration: 200 * time.Millisecond}, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.OK != res.Requests || res.Errors+res.Denied != 0 {
				t.Fatalf("requests %d ok %d errors %d denied %d (%s)", res.Requests, res.OK, res.Errors, res.Denied, res.FirstError)
			}
			if tt.wantAtMost > 0 && res.Requests > tt.wantAtMost {
				t.Errorf("sent %d requests from a pool of %d", res.Requests, tt.wantAtMost)
			}
			if res.Hist.Count() != res.Requests {
				t.Errorf("histogram holds %d values for %d requests", res.Hist.Count(), res.Requests)
			}
		})
	}
}

func TestRunLoadCountsErrors(t *testing.T) {
	// Nothing listens on this socket: every call fails, and is counted.
	target := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	res, err := runLoad(context.Background(), loadOptions{Target: target, Conns: 1, Workers: 1, Duration: 100 * time.Millisecond, Timeout: 50 * time.Millisecond},
		&source{warm: []*authv3.CheckRequest{checkRequest("", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.OK != 0 || res.FirstError == "" {
		t.Errorf("errors %d ok %d first %q", res.Errors, res.OK, res.FirstError)
	}
}

func TestRunLoadRejectsBadOptions(t *testing.T) {
	if _, err := runLoad(context.Background(), loadOptions{Target: "127.0.0.1:1"}, &source{}); err == nil {
		t.Fatal("zero workers accepted")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{0.9, 0.7, 1.2}, 0.9},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		in := slices.Clone(tc.in)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("median reordered its input: %v", tc.in)
		}
	}
}

func TestSourceCycle(t *testing.T) {
	src := &source{cycle: [][]byte{[]byte("a"), []byte("b"), []byte("c")}}
	var got []string
	for n := range 7 {
		r, err := src.NextRaw(n%2, uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(r))
	}
	if want := "abcabca"; strings.Join(got, "") != want {
		t.Errorf("cycled %q, want %q", strings.Join(got, ""), want)
	}
	if src.Used() != 7 {
		t.Errorf("Used = %d, want 7", src.Used())
	}
}

// Each side gets turnsPerSide turns, and for every even count their
// positions sum alike: a drift linear in time falls on both sides equally.
func TestTurnOrderCancelsLinearDrift(t *testing.T) {
	for _, tc := range []struct {
		d, slice time.Duration
		want     int
	}{
		{3 * time.Second, 500 * time.Millisecond, 6},
		{3 * time.Second, 700 * time.Millisecond, 6}, // 5 rounded up to even
		{time.Second, 2 * time.Second, 2},
		{6 * time.Second, 250 * time.Millisecond, 24},
	} {
		if got := turnsPerSide(tc.d, tc.slice); got != tc.want {
			t.Errorf("turnsPerSide(%s, %s) = %d, want %d", tc.d, tc.slice, got, tc.want)
		}
	}
	for k := 1; k <= 4; k++ {
		for n := 2; n <= 40; n += 2 {
			turns, positions := make([]int, k), make([]int, k)
			for i := range k * n {
				s := turnSide(i, k)
				turns[s]++
				positions[s] += i
			}
			for s := range k {
				if turns[s] != n || positions[s] != positions[0] {
					t.Errorf("%d sides, %d turns each: sides took %v turns at positions summing to %v", k, n, turns, positions)
					break
				}
			}
		}
	}
	if got := []int{turnSide(0, 2), turnSide(1, 2), turnSide(2, 2), turnSide(3, 2)}; !slices.Equal(got, []int{0, 1, 1, 0}) {
		t.Errorf("two sides take turns %v, want 0 1 1 0", got)
	}
}

// interleaved against two in-process floors: every turn's requests are
// counted on its side, and each side is measured for the whole duration.
func TestInterleavedAgainstTwoFloors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var targets [2]string
	for i := range targets {
		addrs := make(chan []string, 1)
		errc := make(chan error, 1)
		go func() { errc <- serveFloor(ctx, []string{"127.0.0.1:0"}, func(a []string) { addrs <- a }) }()
		select {
		case a := <-addrs:
			targets[i] = a[0][len("tcp://"):]
		case err := <-errc:
			t.Fatal(err)
		}
	}
	const d = 400 * time.Millisecond
	sides := make([]side, 2)
	for i := range sides {
		sides[i] = side{o: loadOptions{Target: targets[i], Conns: 1, Workers: 2, Warmup: 50 * time.Millisecond, PID: os.Getpid()},
			src: &source{warm: []*authv3.CheckRequest{checkRequest("t", i)}}}
	}
	res, err := interleaved(ctx, sides, d, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Requests == 0 || r.OK != r.Requests || r.Hist.Count() != r.Requests {
			t.Errorf("side %d: requests %d ok %d histogram %d (%s)", i, r.Requests, r.OK, r.Hist.Count(), r.FirstError)
		}
		if r.Elapsed < d || r.ServerCPU <= 0 {
			t.Errorf("side %d: measured %s with %s of CPU; want at least %s and some CPU", i, r.Elapsed, r.ServerCPU, d)
		}
	}
}
